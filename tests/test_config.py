import pytest

from pipelines.config import StageConfig, describe_fields
from pipelines.errors import ConfigError
from pipelines.stages.ppo.config import PPOConfig
from pipelines.stages.reward.config import RewardConfig
from pipelines.stages.sft.config import SFTConfig


def test_yaml_and_overrides(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("stage: sft\ntrain_file: a.jsonl\nmax_steps: 5\nlearning_rate: 1\n")
    cfg = SFTConfig.load(recipe, ["max_steps=7", "lora_target_modules=q_proj,v_proj", "quantization=4bit"])
    assert cfg.max_steps == 7 and cfg.learning_rate == 1.0 and isinstance(cfg.learning_rate, float)
    assert cfg.lora_target_modules == ["q_proj", "v_proj"] and cfg.quantization == "4bit"
    # The YAML written to a run directory loads back to the same config.
    import yaml

    again = SFTConfig.from_dict({k: v for k, v in yaml.safe_load(cfg.to_yaml()).items() if k != "stage"})
    assert again == cfg


@pytest.mark.parametrize("overrides, words", [
    (["max_stepz=3"], ["Unknown key `max_stepz`", "Did you mean `max_steps`"]),
    (["max_steps=0"], ["`max_steps` is 0", "minimum 1"]),
    (["max_steps=ten"], ["`max_steps` must be int", "'ten'"]),
    (["quantization=3bit"], ["`quantization`", "'3bit'", "none"]),
    (["lora_dropout=2"], ["`lora_dropout`", "maximum"]),
    (["train_file="], ["`train_file` is empty"]),
    (["oops"], ["not of the form key=value"]),
    (["learning_rate=.nan"], ["`learning_rate` is nan", "not a finite number", "between 0.0 and 1.0"]),
    (["lora_dropout=.inf"], ["`lora_dropout` is inf", "not a finite number"]),
    (["seed=-1"], ["`seed` is -1", "minimum 0"]),
    (["max_steps=[1"], ["`--set max_steps=[1`", "not valid YAML", "quote it"]),
])
def test_bad_settings_name_the_field_and_the_fix(overrides, words):
    with pytest.raises(ConfigError) as err:
        SFTConfig.load(None, ["train_file=x.jsonl", *overrides])
    for word in words:
        assert word in str(err.value)
    assert "Fix" in str(err.value) or "Did you mean" in str(err.value)


def test_bad_yaml_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("train_file: [a\nmax_steps: 2\n")
    with pytest.raises(ConfigError, match="not valid YAML at line"):
        SFTConfig.load(bad)
    with pytest.raises(ConfigError, match="does not exist"):
        SFTConfig.load(tmp_path / "missing.yaml")


def test_cross_field_checks():
    with pytest.raises(ConfigError, match="divisible"):
        PPOConfig(prompts_file="p.jsonl", batch_size=6, num_minibatches=4)
    assert RewardConfig(train_file="p.jsonl").accuracy_gate == 0.70


def test_every_field_has_help():
    for cls in StageConfig.__subclasses__():
        for row in describe_fields(cls):
            assert row["help"], (cls.__name__, row["name"])


def test_a_run_saved_before_a_setting_existed_keeps_the_behaviour_it_was_trained_with(tmp_path):
    """A PPO run's config.yaml from before `value_model` existed was trained with a separate value adapter: resuming
    it must rebuild that, while a recipe that leaves the setting out gets today's default."""
    from pipelines.stages.ppo.config import PPOConfig

    saved = PPOConfig(prompts_file="p.jsonl", reward_run="r").to_yaml()
    assert "value_model: shared\n" in saved and "packing: true\n" in saved
    path = tmp_path / "config.yaml"
    path.write_text(saved.replace("value_model: shared\n", "").replace("packing: true\n", ""))
    old = PPOConfig.load_saved(path)
    assert (old.value_model, old.packing) == ("separate", False)
    assert PPOConfig.load_saved(path, ["max_steps=99"]).max_steps == 99
    assert PPOConfig.load(path).value_model == "shared"


def test_compare_models_number_the_second_run_of_a_stage():
    from pipelines.stages.compare.config import CompareConfig

    cfg = CompareConfig.from_dict({"prompts_file": "p.jsonl", "sft_run": "runs/s", "ppo_run": "runs/a, runs/b",
                                   "dpo_run": "", "grpo_run": "runs/g"})
    assert cfg.compare_models() == {"sft": "runs/s", "ppo": "runs/a", "ppo_2": "runs/b", "grpo": "runs/g"}
