"""A plain TRL SFT script: the baseline that `benchmarks/run.py` compares the workbench's SFT stage against.

Same work as `python -m pipelines sft` with eval off: the same model folder, the same data normalised the same
way (a `messages` conversation -> prompt = every turn but the last, completion = the last assistant turn), the
same pad token, LoRA r/alpha/dropout/targets, batch, max_length, learning rate, steps and seed, fp32 on a CPU
(bf16/fp16 on a GPU, as the workbench picks). It times `trainer.train()` and prints one JSON line.

    python benchmarks/plain_trl_sft.py --model-dir DIR --train-file sample_data/sft_train.jsonl --max-steps 8
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model-dir", required=True)
    p.add_argument("--train-file", required=True, help="JSONL with a `messages` list per line")
    p.add_argument("--max-length", type=int, default=128)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--max-steps", type=int, default=8)
    p.add_argument("--learning-rate", type=float, default=3e-4)
    p.add_argument("--lora-r", type=int, default=16)
    p.add_argument("--lora-alpha", type=int, default=32)
    p.add_argument("--lora-dropout", type=float, default=0.05)
    p.add_argument("--targets", default="q_proj,k_proj,v_proj,o_proj")
    p.add_argument("--seed", type=int, default=42)
    args = p.parse_args()

    import torch
    import trl
    from datasets import load_dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer

    cuda = torch.cuda.is_available()
    dtype = (torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16) if cuda else torch.float32
    tokenizer = AutoTokenizer.from_pretrained(args.model_dir)
    if tokenizer.pad_token is None or tokenizer.pad_token_id == tokenizer.eos_token_id:
        tokenizer.pad_token = "<|endoftext|>"  # SmolLM2's pad = eos = <|im_end|> would mask real chat tokens
    model = AutoModelForCausalLM.from_pretrained(args.model_dir, dtype=dtype).to("cuda" if cuda else "cpu")

    data = load_dataset("json", data_files=args.train_file, split="train")
    data = data.map(lambda r: {"prompt": r["messages"][:-1], "completion": r["messages"][-1:]},
                    remove_columns=data.column_names)

    targets = args.targets.split(",")
    config = trl.SFTConfig(
        output_dir=tempfile.mkdtemp(prefix="plain-sft-"), max_steps=args.max_steps,
        per_device_train_batch_size=args.batch_size, gradient_accumulation_steps=1,
        learning_rate=args.learning_rate, logging_steps=1, eval_strategy="no", max_length=args.max_length,
        completion_only_loss=True, gradient_checkpointing=False, seed=args.seed, save_strategy="no", report_to=[],
        disable_tqdm=True, dataloader_num_workers=0, bf16=dtype == torch.bfloat16, fp16=dtype == torch.float16,
        use_cpu=not cuda,
    )
    lora = LoraConfig(r=args.lora_r, lora_alpha=args.lora_alpha, lora_dropout=args.lora_dropout,
                      target_modules="all-linear" if targets == ["all-linear"] else targets, task_type="CAUSAL_LM")
    trainer = trl.SFTTrainer(model=model, args=config, train_dataset=data, processing_class=tokenizer,
                             peft_config=lora)
    started = time.perf_counter()
    result = trainer.train()
    wall = time.perf_counter() - started
    print("PLAIN_TRL " + json.dumps({
        "stage": "sft", "train_wall_s": round(wall, 3), "train_runtime_s": round(result.metrics["train_runtime"], 3),
        "steps": trainer.state.global_step, "train_examples": len(data),
        "num_tokens": next((row["num_tokens"] for row in reversed(trainer.state.log_history) if "num_tokens" in row),
                           None),
    }), flush=True)


if __name__ == "__main__":
    main()
