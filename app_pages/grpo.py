from workbench import texts
from workbench.panels import stage_page

stage_page("grpo", "GRPO · practise against a checkable rule", texts.GRPO_INTRO)
