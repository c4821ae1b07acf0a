"""Each stage's record against what its runs write: the metric keys its charts draw are keys the stage logs, its
labelled figures read its summary.json, and only a stage whose model generates is exported merged."""

from pipelines.runtime.runs import list_runs
from pipelines.stages import STAGES

# Keys a stage logs only under settings the tiny runs do not use.
ONLY_WITH = {
    "sft": {"eval_loss", "eval_mean_token_accuracy"},  # an eval_file
    "dpo": {"eval_loss", "eval_rewards/margins", "eval_rewards/accuracies"},  # an eval_file
    "ppo": {"time/all_reduce",  # several processes
            "time/forward_value"},  # value_model: separate
    "grpo": {"rewards/matches_regex/mean", "rewards/within_length/mean", "rewards/judge/mean"},  # those rewards
}


def test_every_charted_metric_is_one_the_stage_logs(methods_runs):
    checked = []
    for stage in (s for s in STAGES.values() if s.charts):
        run = next(r for r in list_runs(methods_runs, stage.id))
        written = {key for row in run.metrics() for key in row}
        for chart in stage.charts:
            keys = {key for key, _ in chart.series}
            assert keys & written, (stage.id, chart.title)  # the chart draws something
            assert keys - written <= ONLY_WITH.get(stage.id, set()), (stage.id, chart.title, keys - written)
        checked.append(stage.id)
    assert checked == ["sft", "reward", "ppo", "dpo", "grpo"]


def test_every_stage_names_its_own_figures_from_its_summary(methods_runs):
    for stage in (s for s in STAGES.values() if s.trains):
        run = next(r for r in list_runs(methods_runs, stage.id))
        figures = stage.figures(run.summary())
        assert figures and all(label and value and "?" not in value for label, value in figures), (stage.id, figures)


def test_a_merged_export_of_a_stage_that_does_not_generate_is_refused(tiny_reward_run, tmp_path, capsys):
    from pipelines.cli import main

    assert main(["export", "--run", str(tiny_reward_run), "--out", str(tmp_path / "merged"), "--merged"]) == 2
    assert "Merged export is for models that generate (SFT, PPO, DPO, GRPO)" in capsys.readouterr().err
    assert not (tmp_path / "merged").exists()
