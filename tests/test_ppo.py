"""Stage 3 on tiny models: it learns a rule-based reward, does nothing at lr 0, shares one base, compares."""

import json
import random

import pytest
import torch

from pipelines.data.answers import is_correct
from pipelines.data.formats import encode_prompt
from pipelines.model.judge import Judge, encode_for_judge
from pipelines.model.sampling import response_mask
from pipelines.runtime.runs import Run
from pipelines.stages.ppo.config import PPOConfig
from pipelines.stages.ppo.roles import SharedRoles
from pipelines.stages.ppo.train import train
from tests.conftest import SAMPLE, cli, only_run, read_json


def full_pass(roles, ids, mask, width, temperature):
    """The plain way, as a reference for every saving: a padded pass, the LM head on every response column, then
    log-probs, entropy and values (a shared head's, or the `value` adapter's when the critic is separate)."""
    from pipelines.model.packing import padded_hidden
    from pipelines.stages.ppo.core import entropy_of, logprobs_of

    hidden = padded_hidden(roles.decoder, ids, mask)[:, width - 1:-1]
    logits = roles.logits(hidden).float() / temperature
    return logprobs_of(logits, ids[:, width:]), roles.value_head(hidden.float()).squeeze(-1), entropy_of(logits)


def brevity(text: str) -> float:
    """1 for an empty answer, 0 for eight words: the yes/no model starts at about six words (score ~0.25)."""
    return 1 - len(text.split()) / 8


@pytest.mark.parametrize("value_model,gain", [("shared", 0.2), ("separate", 0.4)])
def test_ppo_raises_a_rule_based_reward_with_bounded_kl(yes_no_model, tmp_path, value_model, gain):
    """Reward: shorter answers. Checked over seeds 0-4 with 1 and 2 threads (the same numbers both ways): the first
    five steps average 0.25-0.46; the last ten 0.56-1.00 with the shared value head, 0.92-0.99 with the separate
    value adapter, whose critic learns this toy's per-token values faster. The KL stays under 16 (it cannot pass the
    KL of answering nothing at all). `max_kl` is off: the guard is not under test and must not decide the outcome."""
    cfg = PPOConfig(prompts_file="unused", reward_run="unused", batch_size=16, max_steps=25, learning_rate=1e-3,
                    lora_r=8, max_new_tokens=8, temperature=1.0, kl_coef=0.02, ppo_epochs=4, sample_every=5,
                    unfinished_penalty=0.0, max_kl=0.0, value_model=value_model)
    random.seed(0)
    torch.manual_seed(0)
    roles = SharedRoles(cfg, str(yes_no_model), "cpu", None, None)
    from pipelines.model.loading import load_tokenizer

    tok = load_tokenizer(str(yes_no_model))
    tok.padding_side = "left"
    run = Run.create("ppo", cfg.to_yaml(), tmp_path)
    prompts = [{"prompt": [{"role": "user", "content": "Answer."}]}]
    summary = train(cfg, run, roles, tok, prompts, lambda batch, texts: [brevity(t) for t in texts])
    metrics = run.metrics()
    scores = [m["objective/scores"] for m in metrics]
    first, last = sum(scores[:5]) / 5, sum(scores[-10:]) / 10  # step 1's rollouts come from the untouched policy
    assert first < 0.6, first  # the start really answers at length
    assert last > first + gain, (first, last)
    assert max(m["objective/kl"] for m in metrics) < 25  # bounded: well inside the default `max_kl` of 50
    assert summary["steps"] == 25 and (run.path / "samples.jsonl").exists()
    for key in ("objective/rlhf_reward", "objective/entropy", "policy/approxkl", "policy/clipfrac", "loss/policy",
                "loss/value", "val/ratio", "objective/kl_coef", "response_length", "tokens_per_second"):
        assert key in metrics[-1]
    # Where each step went: every phase took time, and together they are the step (up to the report itself). The
    # shared value head has no pass of its own.
    phases = ("generate", "judge", "forward_policy", "forward_reference", "backward", "optimizer")
    phases += ("forward_value",) if value_model == "separate" else ()
    assert ("time/forward_value" in metrics[-1]) == (value_model == "separate")
    for previous, m in zip(metrics, metrics[1:]):
        assert all(m[f"time/{phase}"] > 0 for phase in phases), m
        step_seconds = sum(m[f"time/{phase}"] for phase in phases) + m["time/other"]
        assert step_seconds <= m["time"] - previous["time"] + 0.02  # `time` is rounded to 0.01 s


def ppo_args(sft, reward, runs, *extra):
    return ["ppo", "--set", f"sft_run={sft}", "--set", f"reward_run={reward}", "--set",
            f"prompts_file={SAMPLE / 'prompts_train.jsonl'}", "--set", "max_new_tokens=8", "--set", "batch_size=4",
            "--set", "max_steps=3", "--runs-dir", runs, *extra]


def test_zero_learning_rate_keeps_kl_zero_and_ratio_one(tiny_sft_run, tiny_reward_run, tmp_path):
    runs = tmp_path / "runs"
    assert cli(*ppo_args(tiny_sft_run, tiny_reward_run, runs, "--set", "learning_rate=0")) == 0
    run = only_run(runs)
    metrics = [m for m in Run(run).metrics() if "objective/kl" in m]
    assert len(metrics) == 3
    for m in metrics:  # the reference pass runs on merged float32 weights: equal up to rounding
        assert abs(m["objective/kl"]) < 1e-5 and abs(m["objective/kl_k3"]) < 1e-9
        assert m["val/ratio"] == pytest.approx(1.0, abs=1e-6) and m["policy/clipfrac"] == 0.0
    log = (run / "run.log").read_text()
    assert "one tiny-llama0 base serves policy" in log
    assert "and judge (reward LoRA + score head on the reference adapter)" in log  # the judge started from this SFT
    assert "LoRA on 8 layers (k_proj, o_proj, q_proj, v_proj)" in log
    summary = read_json(run / "summary.json")
    assert summary["shared_judge"] is True and abs(summary["mean_kl"]) < 1e-5
    assert summary["lora_modules"] == ["k_proj", "o_proj", "q_proj", "v_proj"] and summary["lora_layers"] == 8
    assert (run / "adapter" / "adapter_model.safetensors").exists()
    samples = [json.loads(line) for line in (run / "samples.jsonl").read_text().splitlines()]
    assert {"step", "prompt", "response", "score", "kl"} <= set(samples[0])


@pytest.mark.parametrize("judge_from, ppo_from, adapters", [
    ("sft", "sft", ["reference", "judge"]),  # the judge's SFT start is PPO's reference
    ("base", "sft", ["judge"]),  # not stacked on the reference: the judge never saw the SFT adapter
    ("sft", "base", ["judge_start", "judge"]),  # its own SFT start, loaded frozen beside the policy
    ("base", "base", ["judge"]),
])
def test_shared_base_judge_scores_like_the_standalone_judge(tiny_model_dir, tiny_sft_run, tiny_reward_run,
                                                            tiny_base_reward_run, judge_from, ppo_from, adapters):
    """Riding on the policy's base, the judge scores as the judge that was trained, gated and is scored by
    `pipelines score` (the reward run loaded on its own), for either start of the judge and of PPO."""
    from pipelines.model.loading import load_tokenizer

    judge_run = tiny_reward_run if judge_from == "sft" else tiny_base_reward_run
    cfg = PPOConfig(prompts_file="unused", reward_run=str(judge_run))
    roles = SharedRoles(cfg, str(tiny_model_dir), "cpu", Run(tiny_sft_run) if ppo_from == "sft" else None,
                        Run(judge_run))
    assert roles.judge_adapters == adapters
    judge = Judge(Run(judge_run), "cpu")
    tok = load_tokenizer(str(tiny_model_dir))
    prompts = ["What is 2 + 2?", "Name a colour."]
    responses = ["Happy to help! It is 4. Have a lovely day!", "Whatever. Blue."]
    shared = roles.judge_scores([encode_for_judge(tok, p, r, 96) for p, r in zip(prompts, responses)],
                                tok.pad_token_id)
    assert shared == pytest.approx(judge.score(prompts, responses), abs=1e-4)


def test_reference_and_judge_passes_on_merged_weights_equal_the_active_adapters(tiny_model_dir, tiny_sft_run,
                                                                               tiny_reward_run):
    """The reference's log-probs and the judge's hidden states are computed on merged weights (W + dW of each
    adapter; the judge sums two): the same numbers as with the adapters active, within float rounding, different
    from the bare base's, and the base weights afterwards the very tensors they were."""
    cfg = PPOConfig(prompts_file="unused", reward_run=str(tiny_reward_run))
    roles = SharedRoles(cfg, str(tiny_model_dir), "cpu", Run(tiny_sft_run), Run(tiny_reward_run))
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(3, 400, (3, 14), generator=gen)
    mask = torch.ones_like(ids)
    mask[0, :4] = 0  # a left-padded prompt
    before = {n: (p, p.detach().clone()) for n, p in roles.model.named_parameters() if "lora" not in n}
    with torch.no_grad():
        for adapters in (roles.reference, roles.judge_adapters):
            with roles.frozen(adapters):
                merged_hidden = roles.hidden(ids, mask)
                merged_logprobs = roles.response_logprobs(ids, mask, 6, 0.7)[0]
            with roles.use(adapters):
                active_hidden = roles.hidden(ids, mask)
                active_logprobs = roles.response_logprobs(ids, mask, 6, 0.7)[0]
            with roles.use([]):
                bare = roles.hidden(ids, mask)
            real = mask.bool()
            assert torch.allclose(merged_hidden[real], active_hidden[real], atol=1e-4, rtol=1e-4), adapters
            assert torch.allclose(merged_logprobs, active_logprobs, atol=1e-5), adapters
            assert not torch.allclose(active_hidden[real], bare[real], atol=1e-3), adapters  # the adapters matter
    after = dict(roles.model.named_parameters())
    for name, (param, value) in before.items():
        assert after[name] is param and torch.equal(param, value), name


def test_frozen_passes_merge_only_float32_weights(yes_no_model):
    """In 16 bits, W + dW keeps only the top bits of W: a small dW would vanish. Sampling, the reference and the
    judge then run with the adapters active."""
    from peft.tuners.lora import LoraLayer

    cfg = PPOConfig(prompts_file="unused", reward_run="unused", lora_r=4)
    roles = SharedRoles(cfg, str(yes_no_model), "cpu", None, None)
    layer = next(m for m in roles.model.modules() if isinstance(m, LoraLayer)).get_base_layer()
    for dtype, merges in ((torch.float32, True), (torch.bfloat16, False)):
        roles.model.to(dtype)
        original = layer.weight
        with roles.frozen(["policy"]):
            assert (layer.weight is not original) is merges, dtype
        assert layer.weight is original


def test_response_mask():
    mask, finished = response_mask(torch.tensor([[5, 9, 7, 7], [5, 6, 6, 6]]), eos_ids=[9])
    assert mask.tolist() == [[1, 1, 0, 0], [1, 1, 1, 1]] and finished.tolist() == [True, False]


def test_kl_bound_stops_the_run_with_a_clear_status(tiny_sft_run, tiny_reward_run, tmp_path):
    runs = tmp_path / "runs"
    assert cli(*ppo_args(tiny_sft_run, tiny_reward_run, runs, "--set", "learning_rate=0.5", "--set",
                         "max_kl=0.000001", "--set", "max_steps=6")) == 1
    status = read_json(only_run(runs) / "status.json")
    assert status["state"] == "failed" and "max_kl" in status["error"] and "kl_coef" in status["error"]
    assert (only_run(runs) / "adapter" / "adapter_model.safetensors").exists()  # nothing lost


def test_compare_writes_side_by_side_and_win_rates(tiny_sft_run, tiny_reward_run, tmp_path):
    runs = tmp_path / "runs"
    assert cli(*ppo_args(tiny_sft_run, tiny_reward_run, runs, "--set", "max_steps=2")) == 0
    ppo = only_run(runs)
    assert cli("compare", "--set", f"sft_run={tiny_sft_run}", "--set", f"ppo_run={ppo}", "--set",
               f"reward_run={tiny_reward_run}", "--set", f"prompts_file={SAMPLE / 'prompts_eval.jsonl'}", "--set",
               "num_prompts=6", "--set", "max_new_tokens=6", "--runs-dir", runs) == 0
    compare = max(runs.glob("*-compare"))
    rows = [json.loads(line) for line in (compare / "compare.jsonl").read_text().splitlines()]
    assert len(rows) == 6
    for row in rows:
        assert {"prompt", "base", "sft", "ppo", "winner"} <= set(row)
        assert row["winner"] == max(("base", "sft", "ppo"), key=lambda m: row[m]["score"])
    summary = read_json(compare / "compare_summary.json")
    assert set(summary["mean_score"]) == {"base", "sft", "ppo"}
    for key in ("win_rate_ppo_vs_sft", "win_rate_ppo_vs_base", "win_rate_sft_vs_base"):
        assert 0.0 <= summary[key] <= 1.0
    assert summary["mean_kl"] == read_json(ppo / "summary.json")["mean_kl"]
    # the second axis: prompts with a reference answer are graded, the others are not
    answers = [json.loads(line).get("answer") for line in (SAMPLE / "prompts_eval.jsonl").read_text().splitlines()[:6]]
    assert 0 < sum(map(bool, answers)) < 6  # the fixture mixes both kinds
    assert summary["graded_prompts"] == sum(map(bool, answers))
    for row, answer in zip(rows, answers):
        assert row["answer"] == answer
        for model in ("base", "sft", "ppo"):
            expected = is_correct(row[model]["response"], answer, row["prompt"]) if answer else None
            assert row[model]["correct"] == expected
    for model in ("base", "sft", "ppo"):
        graded = [row[model]["correct"] for row in rows if row["answer"]]
        assert summary["correct_rate"][model] == sum(graded) / len(graded)
    assert summary["judge_picked_wrong"] == sum(row[row["winner"]]["correct"] is False for row in rows)
    # six tokens from a random tiny base never end a turn: each such answer is marked as cut off
    assert all(row["base"]["cut_off"] is True for row in rows)

    # two runs of one stage: keys ppo and ppo_2. The same run twice samples the same answers from the same seed,
    # so every prompt is a tie: a win rate of exactly one half
    assert cli("compare", "--set", f"sft_run={tiny_sft_run}", "--set", f"ppo_run={ppo}, {ppo}", "--set",
               f"reward_run={tiny_reward_run}", "--set", f"prompts_file={SAMPLE / 'prompts_eval.jsonl'}", "--set",
               "num_prompts=4", "--set", "max_new_tokens=6", "--set", "run_name=twice", "--runs-dir", runs) == 0
    twice = read_json(max(runs.glob("*-compare-twice")) / "compare_summary.json")
    assert twice["models"] == ["base", "sft", "ppo", "ppo_2"]
    assert twice["win_rate_ppo_2_vs_ppo"] == 0.5 and twice["mean_score"]["ppo_2"] == twice["mean_score"]["ppo"]


def test_each_ppo_epoch_uses_every_rollout_exactly_once(yes_no_model, tmp_path):
    """Minibatches partition the batch: one shuffle per epoch, split into disjoint parts (drawing each minibatch
    afresh would use some rollouts twice and others never)."""
    from pipelines.model.loading import load_tokenizer

    cfg = PPOConfig(prompts_file="unused", reward_run="unused", batch_size=8, num_minibatches=4, ppo_epochs=3,
                    max_steps=2, max_new_tokens=6, temperature=1.0, lora_r=4)
    roles = SharedRoles(cfg, str(yes_no_model), "cpu", None, None)
    seen = {"rollout": [], "updates": []}
    original = roles.response_logprobs

    def spy(ids, mask, width, temperature, entropy=False):
        rows = [tuple(r) for r in ids.tolist()]
        if torch.is_grad_enabled():
            seen["updates"].append(rows)
        elif len(rows) == cfg.batch_size:  # the rollout's own forward sees the whole batch
            seen["rollout"].append(rows)
        return original(ids, mask, width, temperature, entropy)

    roles.response_logprobs = spy
    tok = load_tokenizer(str(yes_no_model))
    tok.padding_side = "left"
    prompts = [{"prompt": [{"role": "user", "content": f"Answer {i}."}]} for i in range(8)]
    train(cfg, Run.create("ppo", cfg.to_yaml(), tmp_path), roles, tok, prompts, lambda b, t: [0.0] * len(t))
    per_step = cfg.ppo_epochs * cfg.num_minibatches
    assert len(seen["updates"]) == cfg.max_steps * per_step
    for step, batch in enumerate(seen["rollout"][::2]):  # policy and reference forwards both see the batch
        for epoch in range(cfg.ppo_epochs):
            start = step * per_step + epoch * cfg.num_minibatches
            used = [row for mb in seen["updates"][start:start + cfg.num_minibatches] for row in mb]
            assert all(len(mb) == 2 for mb in seen["updates"][start:start + cfg.num_minibatches])
            assert sorted(used) == sorted(batch)


@pytest.mark.parametrize("value_model,num_minibatches", [("shared", 1), ("separate", 1), ("shared", 2)])
def test_the_rollout_numbers_are_those_of_a_pass_of_their_own(yes_no_model, tmp_path, monkeypatch, value_model,
                                                               num_minibatches):
    """With one minibatch the rollout's log-probs and values come from the first update's forward instead of a pass
    of their own, packed, with the LM head on real tokens only. At every step, before any update: the weights are
    still those that sampled the responses, and log-probs, values, entropy, KL, advantages and returns equal what a
    plain padded no-grad pass computes."""
    import pipelines.stages.ppo.train as ppo
    from pipelines.model.loading import load_tokenizer

    cfg = PPOConfig(prompts_file="unused", reward_run="unused", batch_size=4, num_minibatches=num_minibatches,
                    ppo_epochs=2, max_steps=3, max_new_tokens=6, temperature=1.0, lora_r=4, learning_rate=1e-2,
                    value_model=value_model, vf_coef=1.0)
    roles = SharedRoles(cfg, str(yes_no_model), "cpu", None, None)
    assert roles.packing
    sampled_with, last_pass, checked = {}, {}, []
    real_generate, real_assess, real_pass = ppo.generate, ppo.assess_rollout, roles.response_logprobs

    def spy_generate(roles_, *args, **kwargs):
        sampled_with.update({n: p.detach().clone() for n, p in roles.trainable_parameters().items()})
        return real_generate(roles_, *args, **kwargs)

    def spy_pass(ids, mask, width, temperature, entropy=False):
        last_pass.update(ids=ids, mask=mask, width=width)
        return real_pass(ids, mask, width, temperature, entropy)

    def spy_assess(cfg_, logprobs, values, entropy, ref_logprobs, scores, mask, kl_coef):
        got = real_assess(cfg_, logprobs, values, entropy, ref_logprobs, scores, mask, kl_coef)
        assert all(torch.equal(p, sampled_with[n]) for n, p in roles.trainable_parameters().items())
        ids, attn, width = last_pass["ids"], last_pass["mask"], last_pass["width"]
        with torch.no_grad():
            with roles.use(["policy"]):
                own_logprobs, own_values, own_entropy = full_pass(roles, ids, attn, width, cfg.temperature)
            if value_model == "separate":
                with roles.use(["value"]):
                    own_values = roles.values(ids, attn, width)
        roles.use(["policy"], trainable=True)  # back to the update's mode
        want = real_assess(cfg_, own_logprobs, own_values, own_entropy, ref_logprobs, scores, mask, kl_coef)
        real = mask.bool()
        for name in ("logprobs", "values", "kl", "advantages", "returns"):
            assert torch.allclose(getattr(got, name)[real], getattr(want, name)[real], atol=1e-5), name
        assert got.entropy == pytest.approx(want.entropy, abs=1e-5)
        checked.append(got)
        return got

    monkeypatch.setattr(ppo, "generate", spy_generate)
    monkeypatch.setattr(ppo, "assess_rollout", spy_assess)
    roles.response_logprobs = spy_pass
    tok = load_tokenizer(str(yes_no_model))
    tok.padding_side = "left"
    prompts = [{"prompt": [{"role": "user", "content": f"Answer {i}."}]} for i in range(4)]
    train(cfg, Run.create("ppo", cfg.to_yaml(), tmp_path), roles, tok, prompts,
          lambda b, texts: [float(len(t)) for t in texts])
    assert len(checked) == cfg.max_steps
    assert not torch.equal(checked[0].logprobs, checked[-1].logprobs)  # the policy did move between steps
    if value_model == "shared":  # the head learned from the policy's own pass
        assert not torch.equal(roles.value_head.weight, torch.zeros_like(roles.value_head.weight))


def test_passes_skip_padding_after_the_longest_response(yes_no_model):
    """generate() returns as many columns as the longest response. The padding it no longer adds was masked in every
    later pass: with it back, log-probs, KL, values and advantages on the real tokens are the same, and zero after."""
    from pipelines.model.loading import load_tokenizer
    from pipelines.stages.ppo.train import assess_rollout
    from pipelines.model.sampling import end_of_turn_ids, generate, left_pad

    cfg = PPOConfig(prompts_file="unused", reward_run="unused", temperature=1.0, lora_r=4)
    roles = SharedRoles(cfg, str(yes_no_model), "cpu", None, None)
    with torch.no_grad():
        roles.value_head.weight.normal_()  # values that are not all zero
    tok = load_tokenizer(str(yes_no_model))
    tok.padding_side = "left"
    eos = end_of_turn_ids(tok)
    prompt_ids, prompt_mask = left_pad([encode_prompt(tok, [{"role": "user", "content": f"Answer {i}."}])
                                        for i in range(4)], tok.pad_token_id, "cpu")
    torch.manual_seed(0)
    responses = generate(roles, ["policy"], prompt_ids, prompt_mask, tok, max_new_tokens=30, temperature=1.0,
                         top_p=1.0, eos_ids=eos)
    mask, finished = response_mask(responses, eos)
    assert finished.all() and responses.shape[1] == mask.sum(1).max() < 30  # six words end well before 30 tokens

    def numbers(responses, mask):
        ids, attn = torch.cat([prompt_ids, responses], 1), torch.cat([prompt_mask, mask], 1)
        width = prompt_ids.shape[1]
        with torch.no_grad(), roles.use(["policy"]):
            logprobs, values, entropy = roles.response_logprobs(ids, attn, width, 1.0, entropy=True)
        ref = logprobs - 0.1  # any reference: only the arithmetic after it is compared
        return assess_rollout(cfg, logprobs, values, entropy, ref, torch.tensor([1., 0, 2, 1]), mask, 0.05)

    short = numbers(responses, mask)
    extra = torch.full((4, 30 - responses.shape[1]), tok.pad_token_id)
    padded = numbers(torch.cat([responses, extra], 1), torch.cat([mask, torch.zeros_like(extra)], 1))
    n = responses.shape[1]
    real = mask.bool()
    for name in ("logprobs", "values", "kl", "advantages", "returns"):
        a, b = getattr(short, name), getattr(padded, name)
        assert torch.allclose(a[real], b[:, :n][real], atol=1e-5), name
    assert padded.advantages[:, n:].abs().max() == 0 and padded.kl[:, n:].abs().max() == 0
    assert short.entropy == pytest.approx(padded.entropy, abs=1e-5)


def test_sampling_on_merged_weights_matches_the_adapter_and_leaves_the_base_untouched(yes_no_model):
    """generate() samples with the policy merged into the weights (one matmul per layer); greedy answers are those
    of the unmerged adapter, and afterwards every base weight is the very tensor it was, bit for bit."""
    from pipelines.model.loading import load_tokenizer
    from pipelines.model.sampling import end_of_turn_ids, generate, left_pad

    cfg = PPOConfig(prompts_file="unused", reward_run="unused", lora_r=4)
    roles = SharedRoles(cfg, str(yes_no_model), "cpu", None, None)
    with torch.no_grad():  # a policy adapter that really changes the answers
        for name, param in roles.model.named_parameters():
            if ".policy." in name:
                param.normal_(0, 0.3, generator=torch.Generator().manual_seed(len(name)))
    tok = load_tokenizer(str(yes_no_model))
    tok.padding_side = "left"
    ids, mask = left_pad([encode_prompt(tok, [{"role": "user", "content": f"Answer {i}."}]) for i in range(4)],
                         tok.pad_token_id, "cpu")
    before = {n: (p, p.detach().clone()) for n, p in roles.model.named_parameters() if "lora" not in n}
    kwargs = dict(max_new_tokens=8, temperature=0.0, top_p=1.0, eos_ids=end_of_turn_ids(tok))
    merged = generate(roles, ["policy"], ids, mask, tok, **kwargs)
    with roles.use(["policy"]):
        unmerged = roles.model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=8, do_sample=False,
                                        eos_token_id=kwargs["eos_ids"], pad_token_id=tok.pad_token_id)
    bare = generate(roles, [], ids, mask, tok, **kwargs)
    assert torch.equal(merged, unmerged[:, ids.shape[1]:]) and not torch.equal(merged, bare)
    after = dict(roles.model.named_parameters())
    for name, (param, value) in before.items():
        assert after[name] is param and torch.equal(param, value), name


def test_ppo_logs_the_scores_pipelines_score_gives_for_a_judge_trained_from_the_base(tiny_sft_run,
                                                                                    tiny_base_reward_run, tmp_path):
    """A judge trained with `sft_run` empty, used by PPO that starts from an SFT run: each sampled response gets the
    score PPO logged for it from `python -m pipelines score` (it was scored on W + dW_sft + dW_judge before)."""
    runs = tmp_path / "runs"
    assert cli(*ppo_args(tiny_sft_run, tiny_base_reward_run, runs, "--set", "unfinished_penalty=0", "--set",
                         "sample_every=1")) == 0
    run = only_run(runs)
    assert read_json(run / "summary.json")["shared_judge"] is True
    samples = [json.loads(line) for line in (run / "samples.jsonl").read_text().splitlines()]
    assert len(samples) == 12
    scored = tmp_path / "samples.jsonl"
    scored.write_text("".join(json.dumps({"prompt": s["prompt"], "response": s["response"]}) + "\n"
                              for s in samples), encoding="utf-8")
    assert cli("score", "--reward", tiny_base_reward_run, "--file", scored, "--out", tmp_path / "scores.jsonl") == 0
    again = [json.loads(line)["score"] for line in (tmp_path / "scores.jsonl").read_text().splitlines()]
    assert again == pytest.approx([s["score"] for s in samples], abs=0.05)
    assert max(abs(a - s["score"]) for a, s in zip(again, samples)) < 1e-3  # in float32: rounding alone


def test_the_judge_pass_reads_the_token_the_classification_head_reads(tiny_model_dir):
    """Where pad is also the end-of-turn token, transformers' sequence-classification head reads the last token
    that is not pad, not the last real one: PPO's judge pass reads the same (pooled_position)."""
    from transformers import AutoModelForSequenceClassification

    from pipelines.model.judge import pooled_position

    model = AutoModelForSequenceClassification.from_pretrained(tiny_model_dir, num_labels=1).eval()
    eos = model.config.eos_token_id
    model.config.pad_token_id = eos
    sequences = [[11, 12, 13, 14, eos], [21, 22, eos, 23, eos], [31, 32, 33, 34, 35]]
    with torch.no_grad():
        theirs = model(input_ids=torch.tensor(sequences), use_cache=False).logits[:, 0]
        hidden = model.model(input_ids=torch.tensor(sequences), use_cache=False).last_hidden_state
    read = [pooled_position(s, eos) for s in sequences]
    assert read == [3, 3, 4]
    ours = model.score(hidden[torch.arange(3), torch.tensor(read)])[:, 0]
    assert torch.allclose(ours, theirs, atol=1e-6)
    assert not torch.allclose(model.score(hidden[:, -1])[:, 0], theirs, atol=1e-3)  # the last token differs


def test_a_logit_transform_the_workbench_does_not_know_is_refused(tiny_model_dir):
    """PPO's log-probs come from the LM head on hidden states, plus the family's known transform (logits_from_hidden);
    a forward that computes its logits some other way would be sampled from one distribution and trained on another:
    refused at start, before any step."""
    from transformers import AutoModelForCausalLM

    from pipelines.errors import ModelError
    from pipelines.model.loading import check_logits_from_hidden, logits_from_hidden

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    check_logits_from_hidden(model, model.model, logits_from_hidden(model), "cpu")  # Llama: the head alone
    model.config.final_logit_softcapping = 0.5  # a transform the forward does not apply
    with pytest.raises(ModelError, match="computes its logits after the LM head"):
        check_logits_from_hidden(model, model.model, logits_from_hidden(model), "cpu")


@pytest.mark.parametrize("judge, ppo_quantization, exact_merges, shares", [
    ({"sft_run": ""}, "none", True, True),
    ({"sft_run": ""}, "none", False, True),  # bf16 on a GPU: the judge's own LoRA runs unmerged, as it trained
    ({"sft_run": "SFT"}, "none", True, True),  # float32: merged SFT = the two adapters, up to rounding
    ({"sft_run": "SFT"}, "4bit", False, False),  # its SFT adapter was merged into 4-bit weights: rounded
    ({"sft_run": "", "quantization": "4bit"}, "none", True, False),  # trained on another load of the base
])
def test_the_judge_rides_on_the_policy_base_only_where_it_computes_what_was_gated(tiny_model_dir, tmp_path, judge,
                                                                                   ppo_quantization, exact_merges,
                                                                                   shares):
    import yaml

    from pipelines.stages.ppo.roles import shares_base

    config = {"stage": "reward", "model": str(tiny_model_dir), "quantization": "none", **judge}
    run = Run.create("reward", yaml.safe_dump(config), tmp_path)
    assert shares_base(run, str(tiny_model_dir), ppo_quantization, exact_merges) is shares


def test_a_4bit_judge_trained_from_sft_is_scored_as_it_was_gated(tiny_model_dir, tmp_path):
    """4-bit: the judge's SFT adapter was merged into NF4 weights for its training (rounded), which running the
    adapter unmerged on PPO's base would not reproduce. PPO then loads the judge on its own, and each logged score is
    the one `pipelines score` gives."""
    runs = tmp_path / "runs"
    quick = ["--set", f"model={tiny_model_dir}", "--set", "quantization=4bit", "--runs-dir", runs]
    assert cli("sft", "--set", f"train_file={SAMPLE / 'sft_train.jsonl'}", "--set", "max_steps=2", "--set",
               "learning_rate=0.01", "--set", "max_length=96", *quick) == 0
    sft = max(runs.glob("*-sft"))
    assert cli("reward", "--set", f"sft_run={sft}", "--set", f"train_file={SAMPLE / 'prefs_train.jsonl'}", "--set",
               "max_steps=3", "--set", "batch_size=8", "--set", "max_length=96", "--set", "accuracy_gate=0",
               *quick) == 0
    judge = max(runs.glob("*-reward"))
    assert cli(*ppo_args(sft, judge, runs, "--set", "quantization=4bit", "--set", "unfinished_penalty=0", "--set",
                         "sample_every=1", "--set", "max_steps=2")) == 0
    run = max(runs.glob("*-ppo"))
    assert read_json(run / "summary.json")["shared_judge"] is False
    assert "so it is loaded separately, as it was trained" in (run / "run.log").read_text()
    samples = [json.loads(line) for line in (run / "samples.jsonl").read_text().splitlines()]
    scored = tmp_path / "samples.jsonl"
    scored.write_text("".join(json.dumps({"prompt": s["prompt"], "response": s["response"]}) + "\n"
                              for s in samples), encoding="utf-8")
    assert cli("score", "--reward", judge, "--file", scored, "--out", tmp_path / "scores.jsonl") == 0
    again = [json.loads(line)["score"] for line in (tmp_path / "scores.jsonl").read_text().splitlines()]
    assert again == pytest.approx([s["score"] for s in samples], abs=1e-3)


def test_a_ppo_step_that_blows_up_or_drifts_past_max_kl_is_named():
    from pipelines.stages.ppo.train import diverged

    fine = {"loss/policy": 0.1, "loss/value": 0.2, "objective/kl": 3.0}
    assert diverged(fine, max_kl=50.0) is None
    assert diverged({**fine, "loss/value": float("nan")}, max_kl=50.0).startswith("`loss/value` became nan")
    assert diverged({**fine, "objective/kl": float("inf")}, max_kl=0.0).startswith("`objective/kl` became inf")
    assert "beyond `max_kl: 50.0`" in diverged({**fine, "objective/kl": 60.0}, max_kl=50.0)
