"""The demo command's wiring, on the tiny model: the methods preset starts from the runs folder's SFT run, trains
the judge, PPO, DPO and GRPO from it, compares all five models in one comparison, and reports each path's cost."""

import shutil

import pytest

from pipelines import demo
from pipelines.errors import ConfigError
from pipelines.runtime.runs import Run
from tests.conftest import read_json


def test_methods_demo_compares_every_approach_from_one_sft_run(tiny_model_dir, tiny_sft_run, tmp_path, monkeypatch,
                                                              capsys):
    runs = tmp_path / "runs"
    runs.mkdir()
    shutil.copytree(tiny_sft_run, runs / tiny_sft_run.name)
    recipes = demo.demo_configs

    def tiny_configs(preset):  # the preset's own recipes and wiring, shrunk to seconds
        configs = recipes(preset)
        for stage, config in configs:
            config.model = str(tiny_model_dir)
            for name, value in (("max_steps", 2), ("batch_size", 2), ("max_length", 96), ("max_new_tokens", 6),
                                ("num_prompts", 5), ("eval_steps", 0), ("allow_untrusted_judge", True)):
                if hasattr(config, name):
                    setattr(config, name, value)
        return configs

    monkeypatch.setattr(demo, "demo_configs", tiny_configs)
    assert demo.run_demo(str(runs), "methods") == 0
    out = capsys.readouterr().out
    made = {p.name.split("-", 2)[2]: p for p in runs.iterdir() if p.is_dir() and not p.name.startswith(".")}
    assert sorted(made) == ["compare-methods", "dpo", "grpo", "ppo", "reward", "sft"]  # SFT reused, not retrained
    summary = read_json(made["compare-methods"] / "compare_summary.json")
    assert summary["models"] == ["base", "sft", "ppo", "dpo", "grpo"]
    assert summary["sft_run"] == tiny_sft_run.name and summary["graded_prompts"] == 5  # the checkable questions
    assert len([k for k in summary if k.startswith("win_rate_")]) == 10  # every pair of five
    for stage in ("reward", "ppo", "dpo", "grpo"):
        assert Run(made[stage]).config()["sft_run"] == str((runs / tiny_sft_run.name).resolve()), stage
    assert "path sft -> reward -> ppo: " in out and "path sft -> grpo: " in out and " min" in out


def test_a_demo_preset_naming_a_stage_that_does_not_exist_is_refused(tmp_path, monkeypatch):
    (tmp_path / "demo_typo.yaml").write_text("about: a typo\nrecipes: quick\nstages: [sft, rewrd, ppo]\n")
    monkeypatch.setattr(demo, "RECIPES", tmp_path)
    with pytest.raises(ConfigError, match="`rewrd` is not a stage"):
        demo.presets()
