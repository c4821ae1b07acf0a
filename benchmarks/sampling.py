"""Sampling a PPO rollout: transformers' `generate` against our decode loop (pipelines/model/sampling.py), same model.

    .venv/bin/python benchmarks/sampling.py [--sft-run runs/<sft>] [--batch 8] [--tokens 40] [--repeats 5]

The quick recipe's shape: 8 prompts from sample_data, 40 new tokens, temperature 0.7, on the default model (the SFT
adapter merged into the weights when --sft-run is given, as PPO samples). No row stops early (no end-of-turn
token), so both sides decode exactly `--tokens` steps. The two sides alternate; medians of `--repeats` calls each.
Also times the draw alone (`torch.multinomial` against the inverse-CDF draw) on the vocabulary's width. Prints a
table and writes JSON (with the CPU) to benchmarks/results/.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from benchmarks.run import cpu_info  # noqa: E402
from pipelines.data.formats import encode_prompt, load_prompts  # noqa: E402
from pipelines.model.loading import load_tokenizer, resolve_model  # noqa: E402
from pipelines.model.sampling import left_pad, pick, sample  # noqa: E402


def load(sft_run: str | None):
    from transformers import AutoModelForCausalLM

    path = resolve_model("default", False)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    if sft_run:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, Path(sft_run) / "adapter").merge_and_unload()
    tokenizer = load_tokenizer(path, False)
    tokenizer.padding_side = "left"
    return model, tokenizer


def timed(fn) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sft-run", default=None)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--tokens", type=int, default=40)
    parser.add_argument("--temperature", type=float, default=0.7)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    model, tokenizer = load(args.sft_run)
    prompts = load_prompts(ROOT / "sample_data" / "prompts_train.jsonl")[0][: args.batch]
    ids, mask = left_pad([encode_prompt(tokenizer, p["prompt"]) for p in prompts], tokenizer.pad_token_id, "cpu")

    def hf():
        with torch.no_grad():
            out = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=args.tokens, do_sample=True,
                                 temperature=args.temperature, top_k=0, eos_token_id=None,
                                 pad_token_id=tokenizer.pad_token_id)
        assert out.shape[1] - ids.shape[1] == args.tokens

    def ours():
        out = sample(model, ids, mask, max_new_tokens=args.tokens, temperature=args.temperature, top_p=1.0,
                     eos_ids=[], pad_id=tokenizer.pad_token_id)
        assert out.shape[1] == args.tokens

    hf(), ours()  # warm-up
    times = {"generate": [], "ours": []}
    for _ in range(args.repeats):
        times["generate"].append(timed(hf))
        times["ours"].append(timed(ours))

    logits = torch.randn(args.batch, model.config.vocab_size) * 3
    draws = {"multinomial": lambda: torch.multinomial(torch.softmax(logits / args.temperature, -1), 1),
             "inverse CDF": lambda: pick(logits, args.temperature, 1.0)}
    draw_ms = {name: statistics.median(timed(fn) for _ in range(200)) * 1000 for name, fn in draws.items()}

    med = {k: statistics.median(v) for k, v in times.items()}
    rows = [("generate()", med["generate"], med["generate"] / args.tokens * 1000, 1.0),
            ("our loop", med["ours"], med["ours"] / args.tokens * 1000, med["ours"] / med["generate"])]
    print(f"{args.batch} prompts x {args.tokens} tokens, T={args.temperature}, {args.repeats} alternating calls each")
    print(f"{'sampler':<12} {'s/call':>8} {'ms/token':>9} {'ratio':>6}")
    for name, seconds, per_token, ratio in rows:
        print(f"{name:<12} {seconds:>8.2f} {per_token:>9.1f} {ratio:>6.2f}")
    print(f"one draw over {model.config.vocab_size} tokens x {args.batch} rows: "
          + ", ".join(f"{k} {v:.2f} ms" for k, v in draw_ms.items()))
    result = {"machine": cpu_info(), "torch_threads": torch.get_num_threads(), "args": vars(args),
              "seconds": times, "median_seconds": med, "ratio": med["ours"] / med["generate"], "draw_ms": draw_ms}
    out = HERE / "results" / f"sampling-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps(result, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
