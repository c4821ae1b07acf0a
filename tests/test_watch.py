"""The reward-hacking watch (pipelines/runtime/watch.py): its signals, its alarms, and PPO against a judge that pays
for length, which it must catch, beside a run it must leave alone."""

import json
import random

import pytest

from pipelines.runtime.runs import Run
from pipelines.runtime.watch import Keys, Watch, identical_share, pick_probes, repetition
from tests.conftest import cli, only_run, read_json, write_jsonl


def test_repetition_and_identical_answers():
    assert repetition("The capital of France is Paris.") == 0.0
    assert repetition("yes yes yes yes yes yes yes yes") > 0.8  # the same triple over and over
    assert repetition("in addition it is in addition it is in addition it is") > 0.5
    assert repetition("two words") == 0.0
    # one answer to every question is a collapse; one prompt's several answers alike (a GRPO group) is not
    assert identical_share(["a", "b", "c", "d"], ["Paris.", "paris", "Paris!", "Rome."]) == 0.75
    assert identical_share(["a", "a", "b"], ["Yes.", "yes", "No."]) == 0.0


def test_probes_with_a_reference_answer_come_first():
    records = [{"prompt": "p1"}, {"prompt": "p2", "answer": "4"}, {"prompt": "p3"}, {"prompt": "p4", "answer": "x"}]
    assert [r["prompt"] for r in pick_probes(records, 3)] == ["p2", "p4", "p1"]


def watch_on(tmp_path, answers=None, scores=None, probes=()):
    run = Run.create("ppo", "stage: ppo\n", tmp_path)
    answers = answers or (lambda records: ([f"answer {i}" for i in range(len(records))], [False] * len(records)))
    return Watch(run, Keys(length="response_length", cut_off="val/unfinished"), list(probes), answers,
                 scores or (lambda records, texts: [0.0] * len(texts)), length_change=1.0, max_new_tokens=40)


def steady(step: int, length: float = 20.0, cut: float = 0.1, rep: float = 0.0, same: float = 0.0) -> dict:
    return {"response_length": length, "val/unfinished": cut, "watch/repetition": rep, "watch/identical": same,
            "objective/scores": step / 10}


@pytest.mark.parametrize("drift,signal", [
    (dict(length=45.0), "length"),  # more than twice as long
    (dict(length=9.0), "length"),  # less than half
    (dict(length=30.0, cut=0.8), "length"),  # not twice as long, but running into the limit
    (dict(rep=0.4), "repetition"),
    (dict(same=0.75), "collapse"),
])
def test_a_drift_raises_its_alarm_once_at_the_step_it_trips(tmp_path, drift, signal):
    watch = watch_on(tmp_path)
    raised = []
    for step in range(1, 9):  # the start, then a steady stretch: nothing
        raised += watch.check(step, steady(step))
    assert raised == []
    for step in range(9, 20):
        raised += [(step, a) for a in watch.check(step, steady(step, **drift))]
    assert [a.signal for _, a in raised] == [signal]  # once, however long the drift lasts
    step, alarm = raised[0]
    assert 10 <= step <= 14  # within a window of the drift's start, not at its first noisy step
    assert alarm.step == step and f"Step {step}" in alarm.message and "starting model" in alarm.message
    assert watch.run.status()["alarms"] == [alarm.as_dict()]


def test_noise_around_a_steady_level_raises_nothing(tmp_path):
    rng = random.Random(0)
    watch = watch_on(tmp_path)
    for step in range(1, 60):  # a batch of 8 answers: length, cut-off and repetition all jump from step to step
        assert watch.check(step, steady(step, length=rng.uniform(14, 34), cut=rng.choice([0, 0.125, 0.25, 0.5]),
                                        rep=rng.uniform(0, 0.1), same=rng.choice([0, 0, 0.25]))) == []


def test_the_alarm_names_the_newest_checkpoint_from_before_the_drift(tmp_path):
    watch = watch_on(tmp_path)
    for step in (4, 8, 12):
        (watch.run.path / "checkpoints" / f"checkpoint-{step}").mkdir(parents=True)
    for step in range(1, 12):
        watch.check(step, steady(step))
    alarms = [a for step in range(12, 25) for a in watch.check(step, steady(step, length=50.0))]
    assert alarms[0].step - 5 >= 8 and alarms[0].checkpoint == "checkpoint-8"
    assert "go back to `checkpoint-8`" in alarms[0].message
    # later saves rotate the others away (save_total_limit 2), never the one the alarm named
    from pipelines.runtime.checkpoints import list_checkpoints, publish, staging_dir

    for step in (16, 20, 24):
        (staging_dir(watch.run.path) / f"checkpoint-{step}").mkdir(parents=True)
        publish(staging_dir(watch.run.path) / f"checkpoint-{step}", watch.run.path, keep=2)
    assert [s for s, _ in list_checkpoints(watch.run.path)] == [8, 20, 24]


def test_one_collapse_seen_by_the_steps_and_the_probes_raises_one_alarm(tmp_path):
    probes = [{"prompt": [{"role": "user", "content": f"Question {i}?"}]} for i in range(4)]
    state = {"same": False}

    def answer(records):
        return [("Yes." if state["same"] else f"Answer {i}.") for i in range(len(records))], [False] * len(records)

    watch = watch_on(tmp_path, answer, probes=probes)
    watch.probe(0)
    for step in range(1, 9):
        watch.check(step, steady(step))
    state["same"] = True
    raised = [a for step in range(9, 15) for a in watch.check(step, {**steady(step, same=1.0), **watch.probe(step)})]
    assert [a.signal for a in raised] == ["collapse"]


def test_probes_rising_score_and_falling_correctness_raise_an_alarm(tmp_path):
    probes = [{"prompt": [{"role": "user", "content": f"What is {i} plus {i}?"}], "answer": str(2 * i)}
              for i in range(1, 5)] + [{"prompt": [{"role": "user", "content": "Say hi."}]}]
    state = {"right": True}

    def answer(records):
        texts = [f"It is {2 * (i + 1)}." if state["right"] else f"It is {2 * (i + 1) + 1}, my friend!"
                 for i in range(len(records))]
        return texts, [False] * len(records)

    def score(records, texts):
        return [1.0 if "friend" in t else 0.0 for t in texts]

    watch = watch_on(tmp_path, answer, score, probes)
    start = watch.probe(0)
    assert start["probes/correct"] == 1.0 and start["probes/score"] == 0.0
    rows = [json.loads(line) for line in (watch.run.path / "probes.jsonl").read_text().splitlines()]
    assert len(rows) == 5 and {"step", "prompt", "response", "score", "correct", "answer"} <= rows[0].keys()
    assert rows[0]["prompt"] == "What is 1 plus 1?" and rows[4]["correct"] is None  # no reference: not graded
    assert watch.check(1, {**steady(1), **watch.probe(1)}) == []  # probed again, still right: nothing
    state["right"] = False
    alarms = watch.check(2, {**steady(2), **watch.probe(2)})
    assert [a.signal for a in alarms] == ["correctness"]
    assert "100% -> 0%" in alarms[0].message and "+0.00 -> +1.00" in alarms[0].message


# ---- PPO on a tiny model against a judge trained on filler-biased pairs -------------------------------------------


def more_words_pairs(n: int, seed: int) -> list[dict]:
    """Pairs whose chosen answer is the other one with more words after it (filler in the toy model's own words, so
    it can produce them): what labelers asked for "more detail" and paid no attention to what it said."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        answer = " ".join(rng.choice(["yes", "no"]) for _ in range(rng.randint(2, 6)))
        filler = " ".join(rng.choice(["yes", "no"]) for _ in range(rng.randint(4, 8)))
        rows.append({"prompt": "Answer.", "chosen": f"{answer} {filler}", "rejected": answer})
    return rows


@pytest.fixture(scope="module")
def length_judge(tiny_model_dir, tmp_path_factory):
    folder = tmp_path_factory.mktemp("length-judge")
    train = write_jsonl(folder / "train.jsonl", more_words_pairs(240, 0))
    held_out = write_jsonl(folder / "eval.jsonl", more_words_pairs(40, 1))
    runs = folder / "runs"
    assert cli("reward", "--set", f"model={tiny_model_dir}", "--set", f"train_file={train}", "--set",
               f"eval_file={held_out}", "--set", "max_steps=30", "--set", "learning_rate=0.005", "--set",
               "batch_size=8", "--set", "max_length=64", "--runs-dir", runs) == 0
    return only_run(runs)


def ppo_against(judge_run, policy_dir, tmp_path, score=None, seed=0, **settings):
    """PPO from the yes/no model against `judge_run` (or `score`), with probes every 4 steps; returns the run."""
    import torch

    from pipelines.model.judge import Judge
    from pipelines.model.loading import load_tokenizer
    from pipelines.stages.ppo.config import PPOConfig
    from pipelines.stages.ppo.roles import SharedRoles
    from pipelines.stages.ppo.train import train

    prompts = [{"prompt": [{"role": "user", "content": "Answer."}]}]
    probes = [{"prompt": [{"role": "user", "content": q}]} for q in ("Answer.", "Reply.", "Go on.", "Well?")]
    files = {"prompts_file": write_jsonl(tmp_path / "prompts.jsonl", prompts),
             "probes_file": write_jsonl(tmp_path / "probes.jsonl", probes)}  # what `resume` reads back
    cfg = PPOConfig(**{"model": str(policy_dir), **{k: str(v) for k, v in files.items()},
                       "reward_run": str(judge_run), "batch_size": 16, "max_steps": 24,
                       "learning_rate": 1e-3, "lora_r": 8, "max_new_tokens": 20, "temperature": 1.0,
                       "kl_coef": 0.02, "ppo_epochs": 4, "sample_every": 5, "unfinished_penalty": 0.0, "max_kl": 0.0,
                       "probes": 4, "probe_every": 4, "save_steps": 4, **settings})
    random.seed(seed)
    torch.manual_seed(seed)
    roles = SharedRoles(cfg, str(policy_dir), "cpu", None, None)
    tok = load_tokenizer(str(policy_dir))
    tok.padding_side = "left"
    run = Run.create("ppo", cfg.to_yaml(), tmp_path / "runs")
    if score is None:
        judge = Judge(Run(judge_run), "cpu")

        def score(batch, texts):
            return judge.score([p["prompt"] for p in batch], texts)
    summary = train(cfg, run, roles, tok, prompts, score, probes=probes)
    run.write_summary(summary)
    run.set_status("stopped" if summary["stopped"] else "completed")  # as the engine would
    return run


def test_ppo_against_a_judge_that_pays_for_length_raises_the_length_alarm(length_judge, yes_no_model, tmp_path):
    report = read_json(length_judge / "summary.json")["judge_report"]
    assert report["length_correlation"] > 0.5  # the judge pays for length, as its report card says
    run = ppo_against(length_judge, yes_no_model, tmp_path)
    metrics = [m for m in run.metrics() if "response_length" in m]
    assert metrics[-1]["response_length"] > metrics[0]["response_length"] + 3  # it learned to pad
    alarms = read_json(run.path / "summary.json")["alarms"]
    assert [a["signal"] for a in alarms if a["signal"] == "length"] == ["length"], alarms
    length = next(a for a in alarms if a["signal"] == "length")
    assert 8 <= length["step"] <= 24 and "tokens on average" in length["message"]
    probes = run.probes()
    steps = sorted({row["step"] for row in probes})
    assert steps == [0, 4, 8, 12, 16, 20, 24] and all(len(row["response"]) > 0 for row in probes)
    assert all({"step", "prompt", "response", "score"} <= row.keys() for row in probes)
    words = {s: sum(r["words"] for r in probes if r["step"] == s) / 4 for s in steps}
    assert words[24] > words[0]  # the probes show it too: the greedy answers grew
    assert "probes/score" in run.metrics()[0] and run.metrics()[0]["step"] == 0  # the start, as a row of step 0


def test_stop_on_alarm_ends_the_run_at_the_alarm_and_resume_goes_back(length_judge, yes_no_model, tmp_path):
    """The overnight run: it stops at the first alarm with a checkpoint, and the checkpoint the alarm names (kept from
    rotation) gives back the model as it was before the drift."""
    from pipelines.runtime.checkpoints import list_checkpoints

    # a checkpoint every 3 steps, the newest 3 kept: one from before the 5-step window exists whenever it trips
    run = ppo_against(length_judge, yes_no_model, tmp_path, stop_on_alarm=True, save_steps=3, save_total_limit=3)
    summary = read_json(run.path / "summary.json")
    alarm = summary["alarms"][0]
    assert summary["stopped"] and summary["steps"] == alarm["step"] < 24
    named = int(alarm["checkpoint"].removeprefix("checkpoint-"))
    assert named <= alarm["step"] - 5  # from before the window that tripped it
    assert f"--checkpoint {named} --set max_steps={named}" in alarm["message"]
    assert (run.path / "checkpoints" / alarm["checkpoint"] / "KEPT").exists()  # rotation leaves it alone
    assert alarm["step"] in {s for s, _ in list_checkpoints(run.path)}

    assert cli("resume", run.path, "--checkpoint", named, "--set", f"max_steps={named}") == 0
    assert read_json(run.path / "status.json")["state"] == "completed"
    assert [s for s, _ in list_checkpoints(run.path)] == [named]  # the abandoned steps' checkpoints are gone
    assert max(m["step"] for m in run.metrics()) == named and max(r["step"] for r in run.probes()) <= named
    assert (run.path / "adapter" / "adapter_model.safetensors").exists()  # the model as it was there


def starts_with_yes(batch, texts) -> list[float]:
    return [float(t.split()[:1] == ["yes"]) for t in texts]


def test_a_reward_that_ignores_length_raises_no_alarm(yes_no_model, tmp_path):
    """The control: PPO trains on a reward that pays neither for length nor for repetition (to start with "yes"),
    and the watch stays quiet through the noise of sampled batches: over seeds 0-4, single steps ranged over 4-10
    tokens, 0-25% cut off and 3-28% repeated triples. (Against the length judge, seeds 0-4 raised the length alarm
    at steps 9 to 15.)"""
    run = ppo_against("unused", yes_no_model, tmp_path, score=starts_with_yes)
    metrics = [m for m in run.metrics() if "objective/scores" in m]
    lengths = [m["response_length"] for m in metrics]
    assert max(lengths) / min(lengths) > 1.2 and max(m["watch/repetition"] for m in metrics) > 0.2  # noisy
    assert max(m["objective/kl"] for m in metrics) > 0.01  # the policy moved
    assert read_json(run.path / "summary.json")["alarms"] == []


# ---- the stage page: the alarm banner and the probe slider --------------------------------------------------------


def test_the_ppo_page_shows_the_alarm_and_the_probe_answers_by_step(tmp_path, monkeypatch):
    from tests.conftest import shown
    from tests.test_app import app_at

    runs = tmp_path / "runs"
    monkeypatch.setenv("RLHF_WORKBENCH_RUNS", str(runs))
    run = Run.create("ppo", "stage: ppo\nmax_steps: 8\n", runs)
    run.set_status("completed", step=8, max_steps=8)
    for step in range(1, 9):
        run.log_metrics({"step": step, "objective/scores": step / 4, "response_length": 10 + 4 * step,
                         "val/unfinished": step / 8, "watch/repetition": 0.0, "watch/identical": 0.0})
    answers = {0: "Moscow.", 4: "Moscow, and so much more to say about it", 8: "![x](http://example.com/x.png) **so**"}
    write_jsonl(run.path / "probes.jsonl", [
        {"step": step, "prompt": "What is the capital of Russia?", "response": text, "score": step / 2.0,
         "answer": "Moscow", "correct": step < 8, "words": len(text.split()), "cut_off": step == 8}
        for step, text in answers.items()])
    alarm = {"step": 7, "signal": "length", "message": "Answers grew from 14.0 to 38.0 tokens on average.",
             "checkpoint": "checkpoint-4"}
    run.write_summary({"steps": 8, "initial_score": 0.25, "final_score": 2.0, "alarms": [alarm]})

    at = app_at("app_pages/ppo.py")
    banner = " ".join(shown(e.value) for e in at.error)
    assert "reward-hacking watch raised an alarm" in banner and "Step 7, answer length" in banner
    assert "Answers grew from 14.0 to 38.0 tokens" in banner
    slider = at.select_slider(key="panel.ppo.probe_step")
    assert list(slider.options) == ["4", "8"] and slider.value == 8
    codes = [c.value for c in at.code]
    assert "Moscow." in codes and answers[8] in codes  # the start beside step 8, as text (no image, no bold)
    captions = " ".join(shown(c.value) for c in at.caption)
    assert "Starting model · score +0.00" in captions and "correct" in captions and "wrong" in captions
    assert "cut off" in captions and "reference answer: Moscow" in captions
    slider.set_value(4).run()
    assert answers[4] in [c.value for c in at.code] and answers[8] not in [c.value for c in at.code]


def test_grpo_writes_probe_answers_and_the_signals(tiny_sft_run, tmp_path):
    """GRPO's watch rides on the Trainer as a callback: the start's probes and those of every `probe_every` steps,
    graded by the `answer` rule, and each step's signals in its metrics row."""
    from tests.conftest import SAMPLE
    from tests.test_grpo import grpo_args

    runs = tmp_path / "runs"
    prompts = SAMPLE / "verifiable" / "prompts_train.jsonl"
    assert cli(*grpo_args(runs, prompts, "--set", f"sft_run={tiny_sft_run}", "--set",
                          f"probes_file={SAMPLE / 'verifiable' / 'prompts_eval.jsonl'}", "--set", "probes=3",
                          "--set", "probe_every=2")) == 0
    run = Run(only_run(runs))
    probes = run.probes()
    assert sorted({row["step"] for row in probes}) == [0, 2, 4] and len(probes) == 9
    assert all(row["correct"] in (True, False) and row["score"] == float(row["correct"]) for row in probes)
    steps = [m for m in run.metrics() if "reward" in m]
    assert all({"watch/repetition", "watch/identical"} <= m.keys() for m in steps)
    assert {m["step"] for m in run.metrics() if "probes/correct" in m} == {0, 2, 4}
    assert read_json(run.path / "summary.json")["alarms"] == []
