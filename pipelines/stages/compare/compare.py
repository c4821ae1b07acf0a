"""Side by side: the base, SFT, PPO, DPO and GRPO models (those given) answer the same held-out prompts with the same
sampling seed; the judge scores every answer and every pair gets a win rate. Where a prompt carries a reference
answer, each answer is also graded right or wrong (pipelines/data/answers.py), the axis the judge cannot see when it
learned tone alone. Writes compare.jsonl (one prompt per line) and compare_summary.json (mean scores, win rates,
correct rates).
"""

from __future__ import annotations

import json
import logging

import torch

from pipelines.data.answers import is_correct
from pipelines.data.formats import load_checked
from pipelines.model.judge import Judge
from pipelines.model.loading import frozen_with, load_base, load_tokenizer, pick_device, resolve_model
from pipelines.model.sampling import sample_responses
from pipelines.runtime.runs import Run
from pipelines.runtime.tracking import Tracker
from pipelines.stages.compare.config import CompareConfig

log = logging.getLogger("pipelines")


class Contestants:
    """One base with the SFT and PPO adapters loaded by name; `base` is the bare model. Quacks like SharedRoles
    for `generate` (its `sampling` context)."""

    def __init__(self, cfg: CompareConfig, base_path: str, device: str, adapters: dict[str, Run]):
        from peft import PeftModel

        self.model = load_base(cfg, base_path, device=device)
        names = list(adapters)
        if names:
            self.model = PeftModel.from_pretrained(self.model, adapters[names[0]].adapter_dir, adapter_name=names[0])
            for name in names[1:]:
                self.model.load_adapter(adapters[name].adapter_dir, adapter_name=name)
        self.model.eval()
        self.quantized = cfg.quantization != "none"

    def frozen(self, adapters: list[str]):
        """Sampling's context (see pipelines.model.loading.frozen_with)."""
        if not hasattr(self.model, "disable_adapter"):  # no adapters loaded: the bare base only
            return torch.no_grad()
        return frozen_with(self.model, adapters, self.quantized)


def win_rate(a: list[float], b: list[float]) -> float:
    """Share of prompts where a scored above b; ties count half."""
    return sum(1.0 if x > y else 0.5 if x == y else 0.0 for x, y in zip(a, b)) / max(len(a), 1)


def run(cfg: CompareConfig, run: Run) -> dict:
    device = pick_device(cfg.device)
    adapters = {name: Run(path) for name, path in cfg.compare_models().items()}
    base_name = next((r.base_model() for r in adapters.values()), cfg.model) or "default"
    base_path = resolve_model(base_name, cfg.trust_remote_code)
    tokenizer = load_tokenizer(base_path, cfg.trust_remote_code)
    tokenizer.padding_side = "left"
    prompts = load_checked("prompts", cfg.prompts_file, log, cfg.column_map)[: cfg.num_prompts]

    contestants = Contestants(cfg, base_path, device, adapters)
    judge = Judge(Run(cfg.reward_run), device)
    models = ["base", *adapters]
    tracker = Tracker(run, len(models))
    responses: dict[str, list[str]] = {}
    cut_off: dict[str, list[bool]] = {}
    scores: dict[str, list[float]] = {}
    with tracker:
        for step, name in enumerate(models, start=1):
            texts, cut_off[name] = sample_responses(contestants, [] if name == "base" else [name], prompts, tokenizer,
                                     batch_size=cfg.batch_size, seed=cfg.seed, max_new_tokens=cfg.max_new_tokens,
                                     temperature=cfg.temperature, top_p=cfg.top_p)
            responses[name] = texts
            scores[name] = judge.score([p["prompt"] for p in prompts], texts)
            tracker.log(step, {f"mean_score/{name}": sum(scores[name]) / len(texts)})
            if tracker.should_stop():
                break

    done = [m for m in models if m in scores]
    # the second axis: is the answer right? (prompts that carry a reference answer; the judge never sees it)
    graded = [i for i, p in enumerate(prompts) if p.get("answer")]
    log.info("%d of %d prompts carry a reference answer: their answers are graded right or wrong.", len(graded),
             len(prompts))
    correct = {m: {i: is_correct(responses[m][i], prompts[i]["answer"], prompts[i]["prompt"][-1]["content"])
                   for i in graded} for m in done}
    winners = [max(done, key=lambda m: scores[m][i]) for i in range(len(prompts))]  # the judge's pick per prompt
    with open(run.path / "compare.jsonl", "w", encoding="utf-8") as fh:
        for i, prompt in enumerate(prompts):
            row = {"prompt": prompt["prompt"][-1]["content"], "answer": prompt.get("answer"),
                   **{m: {"response": responses[m][i], "score": scores[m][i], "correct": correct[m].get(i),
                          "cut_off": cut_off[m][i]}
                      for m in done}}
            row["winner"] = winners[i]
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    judge_run = Run(cfg.reward_run)
    summary = {"prompts": len(prompts), "models": done, "judge_run": judge_run.id,
               "labeler_instruction": judge_run.summary().get("labeler_instruction", ""),
               "mean_score": {m: sum(scores[m]) / len(prompts) for m in done}}
    if graded:
        summary["graded_prompts"] = len(graded)
        summary["correct_rate"] = {m: sum(correct[m].values()) / len(graded) for m in done}
        # the judge's favourite answer was wrong: where a judge of tone is fooled into rewarding a wrong fact
        summary["judge_picked_wrong"] = sum(not correct[winners[i]][i] for i in graded)
    for later, a in enumerate(done):  # every pair, the later model of the list first: ppo_vs_sft, dpo_vs_ppo...
        for b in done[:later]:
            summary[f"win_rate_{a}_vs_{b}"] = win_rate(scores[a], scores[b])
    firsts = {key: adapters[key] for key in (field.removesuffix("_run") for field in cfg.compared_runs)
              if key in adapters}
    summary.update({f"{key}_run": adapter.id for key, adapter in firsts.items()})  # `sft_run`, `ppo_run`...
    # how far the PPO model moved from the SFT model, beside what it gained on the judge (PPO's summary measured it)
    measured = next((s for s in (a.summary() for a in firsts.values()) if "mean_kl" in s), None)
    if measured:
        summary["mean_kl"] = measured.get("mean_kl")  # the average over training
        summary["final_kl"] = measured.get("final_kl")  # at its last step: the model compared here
    # what the reward-hacking watch saw while each aligned model trained: the score above may be the hack's
    trained = {key: adapter.summary()["alarms"] for key, adapter in firsts.items() if adapter.summary().get("alarms")}
    if trained:
        summary["trained_alarms"] = trained
    (run.path / "compare_summary.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
    for line in format_summary(summary):
        log.info(line)
    return {**summary, "stopped": len(done) < len(models)}


def format_summary(summary: dict) -> list[str]:
    lines = [f"Compared on {summary['prompts']} held-out prompts, scored by judge {summary['judge_run']}:"]
    if summary.get("labeler_instruction"):
        lines.append(f"  the judge measures what its labelers were asked: {summary['labeler_instruction']}")
    lines += [f"  mean score {m:<5} {s:+.3f}" for m, s in summary["mean_score"].items()]
    lines += [f"  {k.replace('win_rate_', 'win rate ').replace('_vs_', ' vs ')}: {v:.2f}"
              for k, v in summary.items() if k.startswith("win_rate_")]
    if summary.get("correct_rate"):
        rates = ", ".join(f"{m} {r:.0%}" for m, r in summary["correct_rate"].items())
        lines.append(f"  correct answers, of {summary['graded_prompts']} prompts with a reference answer: {rates}")
        lines.append(f"  the judge's favourite answer was wrong on {summary['judge_picked_wrong']} of them")
    for model, raised in summary.get("trained_alarms", {}).items():
        lines += [f"  the reward-hacking watch, while {model} trained: step {a['step']}, {a['signal']}: {a['message']}"
                  for a in raised]
    if summary.get("mean_kl") is not None:
        final = f"final {summary['final_kl']:.2f}, " if summary.get("final_kl") is not None else ""
        lines.append(f"  PPO KL to the SFT model: {final}training average {summary['mean_kl']:.2f}")
    return lines
