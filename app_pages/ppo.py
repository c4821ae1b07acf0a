from workbench import texts
from workbench.panels import stage_page

stage_page("ppo", "Stage 3 · PPO against the judge", texts.PPO_INTRO)
