"""Our PPO against TRL 1.12's PPOTrainer (TRL's last release with PPO) on one workload, alternating, one process each.

    .venv/bin/pip install --no-deps --target /tmp/trl112 trl==1.12.0      # once; the rest of the stack is ours
    .venv/bin/python benchmarks/trl_ppo.py --trl-path /tmp/trl112 --reward-run runs/<a reward run> [--pairs 2]

Workload (the one the PPO-speed issue measured): both sides start from the bare default base (fp32), LoRA r=16 on
q/k/v/o for the policy, 4 prompts x 32 new tokens at temperature 0.7, one PPO epoch, one minibatch, 6 steps.
TRL's side holds what its trainer needs: the policy (LoRA; the reference is the adapter disabled), a reward model and
a fully trainable value model, each a separate copy of the base. Ours runs the same CLI a user runs (`python -m
pipelines ppo`) with the given reward run as the judge. Seconds per step are the median of the step-to-step
intervals after the first; peak memory is each child's peak RSS. Prints a table and writes JSON beside it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PROMPTS = ROOT / "sample_data" / "prompts_train.jsonl"
STEPS, BATCH, TOKENS = 6, 4, 32

TRL_SIDE = r'''
import json, sys, time
import torch
from datasets import Dataset
from peft import LoraConfig
from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer, TrainerCallback
from trl.experimental.ppo import PPOConfig, PPOTrainer

base, prompts_file, out, steps, batch, tokens = sys.argv[1], sys.argv[2], sys.argv[3], *map(int, sys.argv[4:7])
torch.manual_seed(0)
tok = AutoTokenizer.from_pretrained(base, padding_side="left")
tok.pad_token = tok.pad_token or tok.eos_token
rows = [json.loads(line) for line in open(prompts_file)]
def encode(row):
    messages = row["prompt"] if isinstance(row["prompt"], list) else [{"role": "user", "content": row["prompt"]}]
    return {"input_ids": tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=True,
                                                 return_dict=True)["input_ids"]}
data = Dataset.from_list([encode(r) for r in rows])
policy = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
reward = AutoModelForSequenceClassification.from_pretrained(base, num_labels=1, dtype=torch.float32)
value = AutoModelForSequenceClassification.from_pretrained(base, num_labels=1, dtype=torch.float32)
for m in (policy, reward, value):
    m.config.pad_token_id = tok.pad_token_id
args = PPOConfig(output_dir=out, per_device_train_batch_size=batch, gradient_accumulation_steps=1,
                 num_ppo_epochs=1, num_mini_batches=1, total_episodes=batch * steps, response_length=tokens,
                 temperature=0.7, learning_rate=1e-4, stop_token="eos", missing_eos_penalty=1.0,
                 num_sample_generations=0, report_to=[], use_cpu=True, save_strategy="no", seed=0,
                 local_rollout_forward_batch_size=batch, logging_steps=1)
times = []
class Clock(TrainerCallback):
    def on_step_end(self, args, state, control, **kwargs):
        times.append(time.time())
trainer = PPOTrainer(args=args, processing_class=tok, model=policy, ref_model=None, reward_model=reward,
                     value_model=value, train_dataset=data, eval_dataset=data.select(range(4)),
                     peft_config=LoraConfig(r=16, lora_alpha=32, target_modules=["q_proj", "k_proj", "v_proj",
                                                                                 "o_proj"], task_type="CAUSAL_LM"),
                     callbacks=[Clock()])
trainer.train()
json.dump({"times": times}, open(out + "/times.json", "w"))
'''


def peak_rss_mb(proc: subprocess.Popen) -> tuple[int, float]:
    """Wait for the child; its exit code and peak RSS (MB) from wait4's rusage."""
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return proc.returncode, usage.ru_maxrss / 1024


def per_step(times: list[float]) -> float:
    deltas = [b - a for a, b in zip(times, times[1:])]
    return statistics.median(deltas[1:] if len(deltas) > 2 else deltas)


def run_trl(trl_path: str, base: str, work: Path) -> dict:
    out = Path(tempfile.mkdtemp(dir=work, prefix="trl-"))
    env = {**os.environ, "PYTHONPATH": trl_path, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen([sys.executable, "-c", TRL_SIDE, base, str(PROMPTS), str(out), str(STEPS), str(BATCH),
                             str(TOKENS)], env=env, stdout=subprocess.DEVNULL, stderr=open(out / "log.txt", "w"))
    code, rss = peak_rss_mb(proc)
    if code:
        raise SystemExit(f"TRL side failed ({code}); see {out / 'log.txt'}")
    times = json.loads((out / "times.json").read_text())["times"]
    return {"s_per_step": per_step(times), "peak_rss_mb": rss}


def run_ours(reward_run: str, work: Path, sets: list[str]) -> dict:
    runs = Path(tempfile.mkdtemp(dir=work, prefix="ours-"))
    argv = [sys.executable, "-m", "pipelines", "ppo", "--set", "model=default", "--set", "sft_run=", "--set",
            f"reward_run={reward_run}", "--set", f"prompts_file={PROMPTS}", "--set", f"batch_size={BATCH}",
            "--set", f"max_new_tokens={TOKENS}", "--set", "ppo_epochs=1", "--set", f"max_steps={STEPS}",
            "--set", "temperature=0.7", "--set", "lora_r=16", "--set", "allow_untrusted_judge=true",
            *[a for s in sets for a in ("--set", s)], "--runs-dir", str(runs)]
    proc = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=open(runs / "log.txt", "w"))
    code, rss = peak_rss_mb(proc)
    if code:
        raise SystemExit(f"our side failed ({code}); see {runs / 'log.txt'}")
    run = next(p for p in runs.iterdir() if p.is_dir())
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    times = [r["time"] for r in rows if "objective/scores" in r]
    return {"s_per_step": per_step(times), "peak_rss_mb": rss}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--trl-path", required=True, help="folder holding trl 1.12 (pip install --target)")
    p.add_argument("--reward-run", required=True, help="a reward run of the default base, our side's judge")
    p.add_argument("--pairs", type=int, default=2, help="alternated (ours, TRL) pairs")
    p.add_argument("--set", action="append", default=[], help="extra `--set` for our side, e.g. value_model=separate")
    p.add_argument("--out", default=str(HERE / "results" / f"trl-ppo-{time.strftime('%Y%m%d-%H%M')}.json"))
    args = p.parse_args()
    sys.path.insert(0, str(ROOT))
    from pipelines.model.loading import resolve_model
    from benchmarks.run import cpu_info

    base = resolve_model("default")
    work = Path(tempfile.mkdtemp(prefix="trl-ppo-bench-"))
    results: dict[str, list[dict]] = {"ours": [], "trl": []}
    for i in range(args.pairs):
        results["ours"].append(run_ours(args.reward_run, work, args.set))
        print(f"pair {i + 1}: ours {results['ours'][-1]}", file=sys.stderr, flush=True)
        results["trl"].append(run_trl(args.trl_path, base, work))
        print(f"pair {i + 1}: trl  {results['trl'][-1]}", file=sys.stderr, flush=True)
    summary = {side: {"s_per_step": statistics.median(r["s_per_step"] for r in runs),
                      "peak_rss_mb": max(r["peak_rss_mb"] for r in runs)} for side, runs in results.items()}
    ratio = summary["ours"]["s_per_step"] / summary["trl"]["s_per_step"]
    report = {"machine": cpu_info(), "workload": {"steps": STEPS, "batch": BATCH, "new_tokens": TOKENS,
                                                      "ppo_epochs": 1, "our_sets": args.set},
              "runs": results, "summary": summary, "ours_over_trl": ratio, "python": platform.python_version()}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2))
    print(f"| side | s/step (median of {args.pairs}) | peak RSS (MB) |\n|---|---|---|")
    for side, s in summary.items():
        print(f"| {side} | {s['s_per_step']:.2f} | {s['peak_rss_mb']:.0f} |")
    print(f"\nours / TRL time per step: {ratio:.2f} on {report['machine']['cpu']} ({report['machine']['vector']}, "
          f"{report['machine']['usable_cores']} cores); JSON: {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
