from workbench.panels import stage_page

stage_page("sft")
