"""The preference studio's model work: sampling the two candidates of each pair, and the AI judges (RLAIF).

Candidates: any two of the bare base, SFT runs and PPO runs answer the same prompts (one base in memory, the runs
as named adapters, as on the Compare page). The same model named twice is sampled twice with different seeds:
the classic way to collect preferences between a model's own answers.

AI judges label a set like a person would, under the name `ai:...`, so the page compares them with the humans:
- a finished reward run scores both responses; the higher score wins;
- a local instruction model is asked which response is better; we read the next-token logits of "A" and "B"
  rather than sampling an answer. Models favour a position, so every pair is asked in both orders and kept only
  when both orders pick the same response; otherwise the label is a skip that says so.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from pipelines.config import StageConfig
from pipelines.data.formats import encode_prompt, load_checked
from pipelines.errors import ConfigError
from pipelines.model.judge import Judge
from pipelines.model.loading import load_base, load_tokenizer, pick_device, resolve_model
from pipelines.model.sampling import left_pad
from pipelines.runtime.runs import Run, resolve_run
from pipelines.stages import JUDGE, generating_stages
from pipelines.model.sampling import sample_responses
from pipelines.stages.compare.compare import Contestants
from pipelines.studio.sets import (AI_PREFIX, LabelingSet, agreement, check_new_set, compact_prompt, create_set,
                                   prompt_text)

log = logging.getLogger("pipelines")
SPECS_HELP = ("`base`, a run folder of a stage that generates (SFT, PPO, DPO, GRPO), "
              "or `latest-<stage>` (`latest-sft`)")


# ---- candidates ------------------------------------------------------------------------------------------------


def resolve_spec(spec: str, runs_dir: str | Path | None, field: str) -> Run | None:
    """`base` -> None (the bare base); otherwise a finished run of a stage that generates."""
    if spec == "base":
        return None
    generating = [s.id for s in generating_stages()]
    if spec.startswith("latest-") and spec.removeprefix("latest-") in generating:
        return resolve_run("latest", spec.removeprefix("latest-"), runs_dir, field=field)
    path = Path(spec)
    if not path.is_dir() and runs_dir and (Path(runs_dir) / spec).is_dir():
        path = Path(runs_dir) / spec
    stage = Run(path).stage if (path / "status.json").exists() else ""
    if stage not in generating:
        what = f"a `{stage}` run" if stage else "not a run folder"
        raise ConfigError(f"`{field}` is `{spec}`, {what}. Fix: use {SPECS_HELP}.")
    return resolve_run(str(path), stage, runs_dir, field=field)


def generate_set(name: str, prompts_file: str, spec_a: str, spec_b: str, instruction: str, *,
                 model: str = "default", num: int = 40, max_new_tokens: int = 48, temperature: float = 0.8,
                 top_p: float = 1.0, seed: int = 42, batch_size: int = 8, device: str = "auto",
                 runs_dir: str | Path | None = None) -> LabelingSet:
    check_new_set(name, runs_dir)  # before anything slow
    if not instruction.strip():
        raise ConfigError("`--instruction` is empty. Fix: say what the labeler judges, e.g. \"Which response is more "
                          "polite?\"")
    if num < 1:
        raise ConfigError(f"`--num` is {num}. Fix: ask for at least 1 prompt.")
    runs = {"a": resolve_spec(spec_a, runs_dir, "--a"), "b": resolve_spec(spec_b, runs_dir, "--b")}
    paths = {str(r.path.resolve()) if r else "base" for r in runs.values()}
    same = len(paths) == 1  # one model sampled twice, however it was named
    if same and temperature == 0:
        raise ConfigError(f"`--a` and `--b` are the same model (`{spec_a}`) with `--temperature 0`: greedy decoding "
                          "gives the same response twice. Fix: a temperature above 0 (e.g. 0.9), or two different "
                          "models.")
    prompts = load_checked("prompts", prompts_file, log)[:num]  # a broken line fails here, with its number
    bases = {r.base_model() for r in runs.values() if r is not None}
    if len({resolve_model(b) for b in bases}) > 1:
        raise ConfigError(f"`--a` and `--b` were trained on different base models ({', '.join(sorted(bases))}); the "
                          "studio holds one base in memory. Fix: pick two runs of the same base, or `base`.")
    base_name = next(iter(bases), model)
    if bases and model not in ("", "default", base_name):
        log.warning("`--model` is %s, but the runs were trained on %s; using the runs' base.", model, base_name)
    base_path = resolve_model(base_name)
    device = pick_device(device)
    tokenizer = load_tokenizer(base_path)
    tokenizer.padding_side = "left"
    adapters = {r.id: r for r in runs.values() if r is not None}
    contestants = Contestants(StageConfig(model=base_name, device=device), base_path, device, adapters)

    def label(run: Run | None) -> str:
        return f"base ({Path(base_name).name})" if run is None else f"{run.stage}:{run.id}"

    responses: dict[int, list[str]] = {}
    for side, run in enumerate((runs["a"], runs["b"]), start=1):
        # Two models: the same random stream (a fair comparison). One model twice: two different streams.
        responses[side], _ = sample_responses(
            contestants, [run.id] if run else [], prompts, tokenizer, batch_size=batch_size,
            seed=seed + (1_000_003 if same and side == 2 else 0), max_new_tokens=max_new_tokens,
            temperature=temperature, top_p=top_p, log_as=f"candidate {'AB'[side - 1]} ({label(run)})")

    names = [label(runs["a"]), label(runs["b"])]
    if same:
        names = [f"{names[0]} #1", f"{names[1]} #2"]
    items = [{"prompt": compact_prompt(p["prompt"]), "response_1": r1, "response_2": r2, "model_1": names[0],
              "model_2": names[1], "line": p["_line"]}
             for p, r1, r2 in zip(prompts, responses[1], responses[2])]
    return create_set(name, instruction, f"{len(prompts)} prompts of {prompts_file}, answered by {names[0]} and "
                      f"{names[1]}", items, runs_dir, seed, models=names,
                      sampling={"max_new_tokens": max_new_tokens, "temperature": temperature, "top_p": top_p})


# ---- AI judges -----------------------------------------------------------------------------------------------------


def judge_with_reward(labeling_set: LabelingSet, reward: str, runs_dir: str | Path | None = None,
                      device: str = "auto") -> dict:
    """A finished reward run scores both responses of every item; the higher score wins."""
    run = resolve_run(reward, JUDGE.id, runs_dir, field="--reward")
    judge = Judge(run, pick_device(device))
    items = labeling_set.items()
    prompts = [i["prompt"] for i in items]
    first = judge.score(prompts, [i["response_1"] for i in items])
    second = judge.score(prompts, [i["response_2"] for i in items])
    labeler = f"{AI_PREFIX}reward:{run.id}"
    events = []
    for item, s1, s2 in zip(items, first, second):
        winner = 1 if s1 > s2 else 2 if s2 > s1 else None
        events.append({"item": item["id"], "labeler": labeler, "choice": {1: "left", 2: "right"}.get(winner, "tie"),
                       "shown_left": 1, "winner": winner, "scores": [s1, s2]})
    labeling_set.add_labels(events)
    return {"labeler": labeler, "labeled": len(events), "ties": sum(e["winner"] is None for e in events)}


LLM_QUESTION = ("You compare two responses to the same question.\n"
                "Criterion: {instruction}\n\n"
                "[Question]\n{prompt}\n\n[Response A]\n{a}\n\n[Response B]\n{b}\n\n"
                "By that criterion, which response is better? Answer with one letter: A or B.")


def letter_id(tokenizer, letter: str) -> int:
    ids = tokenizer.encode(letter, add_special_tokens=False)
    if len(ids) != 1:
        raise ConfigError(f"The judge model's tokenizer splits the answer `{letter}` into {len(ids)} tokens, so its "
                          "next-token logits cannot be read as a vote. Fix: use another instruction model.")
    return ids[0]


@torch.no_grad()
def judge_with_llm(labeling_set: LabelingSet, model: str = "default", device: str = "auto",
                   batch_size: int = 8) -> dict:
    """Ask an instruction model "A or B?" for every item in both orders; keep the verdicts both orders share."""
    device = pick_device(device)
    path = resolve_model(model)
    tokenizer = load_tokenizer(path)
    lm = load_base(StageConfig(model=model, device=device), path, device=device).eval()
    a_id, b_id = letter_id(tokenizer, "A"), letter_id(tokenizer, "B")
    items = labeling_set.items()
    instruction = labeling_set.instruction
    questions = []
    for item in items:  # order 1: candidate 1 is "A"; order 2: candidate 2 is "A"
        for first, second in ((1, 2), (2, 1)):
            text = LLM_QUESTION.format(instruction=instruction, prompt=prompt_text(item["prompt"]),
                                       a=item[f"response_{first}"], b=item[f"response_{second}"])
            questions.append(encode_prompt(tokenizer, [{"role": "user", "content": text}]))
    margins: list[float] = []  # logit(A) - logit(B), per question
    for start in range(0, len(questions), batch_size):
        ids, mask = left_pad(questions[start:start + batch_size], tokenizer.pad_token_id, device)
        positions = (mask.cumsum(1) - 1).clamp(min=0)  # left padding: count positions from the first real token
        logits = lm(input_ids=ids, attention_mask=mask, position_ids=positions).logits[:, -1].float()
        margins += (logits[:, a_id] - logits[:, b_id]).cpu().tolist()
    labeler = f"{AI_PREFIX}llm:{Path(model).name}"
    events = []
    for n, item in enumerate(items):
        winner, answers = both_orders_verdict(margins[2 * n], margins[2 * n + 1])
        if winner:
            event = {"choice": "left" if winner == 1 else "right"}
        else:
            event = {"choice": "skip", "reason": f"the two orders disagree (it answered {answers[0]} then "
                                                 f"{answers[1]}: it followed the position, not the content)"}
        events.append({"item": item["id"], "labeler": labeler, "shown_left": 1, "winner": winner,
                       "answers": answers, "margins": margins[2 * n:2 * n + 2], **event})
    labeling_set.add_labels(events)
    consistent = sum(e["winner"] is not None for e in events)
    return {"labeler": labeler, "labeled": len(events), "consistent": consistent,
            "inconsistent": len(events) - consistent,
            "first_position_share": sum(m > 0 for m in margins) / max(len(margins), 1)}


def both_orders_verdict(margin_1: float, margin_2: float) -> tuple[int | None, list[str]]:
    """The candidate (1 or 2) both orders picked, or None; and the letters answered. margin = logit(A) - logit(B);
    order 1 shows candidate 1 as A, order 2 shows candidate 2 as A."""
    answers = ["A" if margin_1 > 0 else "B", "A" if margin_2 > 0 else "B"]
    pick_1 = 1 if answers[0] == "A" else 2
    pick_2 = 2 if answers[1] == "A" else 1
    return (pick_1 if pick_1 == pick_2 else None), answers


def judge_lines(labeling_set: LabelingSet, result: dict) -> list[str]:
    lines = [f"{result['labeler']} labeled {result['labeled']} items of set {labeling_set.name}"]
    if "consistent" in result:
        lines.append(f"  kept {result['consistent']} verdicts that both orders agree on; {result['inconsistent']} "
                     f"depended on the order (recorded as skips); it answered the first position "
                     f"{result['first_position_share']:.0%} of the time")
    for row in agreement(labeling_set):
        if result["labeler"] in (row["labeler 1"], row["labeler 2"]) and row["ai vs human"]:
            other = row["labeler 2"] if row["labeler 1"] == result["labeler"] else row["labeler 1"]
            shown = f"{row['agreement']:.0%}" if row["agreement"] is not None else "n/a"
            lines.append(f"  agreement with {other}: {shown} on {row['both picked a side']} items both decided")
    return lines

