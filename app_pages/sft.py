from workbench import texts
from workbench.panels import stage_page

stage_page("sft", "Stage 1 · Supervised fine-tuning", texts.SFT_INTRO)
