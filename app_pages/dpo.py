from workbench import texts
from workbench.panels import stage_page

stage_page("dpo", "DPO · learn from the pairs directly", texts.DPO_INTRO)
