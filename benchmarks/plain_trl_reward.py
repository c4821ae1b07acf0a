"""A plain TRL reward-model script: the baseline that `benchmarks/run.py` compares the workbench's reward stage against.

Same work as `python -m pipelines reward` with no SFT start and no in-training evaluation: the same model folder
with a one-output sequence-classification head, the same pairs normalised the same way (prompt string -> one user
message, chosen/rejected -> one assistant message each, tokenized with the chat template), the same pad token,
LoRA r/alpha/dropout/targets (SEQ_CLS), batch, learning rate, steps and seed, fp32 on a CPU. TRL filters pairs
longer than `--max-length` (the workbench cuts the prompt instead); on the sample data no pair is that long, and
the script prints how many pairs it kept so a difference would show. It times `trainer.train()` and prints one
JSON line.

    python benchmarks/plain_trl_reward.py --model-dir DIR --train-file sample_data/prefs_train.jsonl --max-steps 8
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
    p.add_argument("--train-file", required=True, help="JSONL with prompt/chosen/rejected strings per line")
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
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    cuda = torch.cuda.is_available()
    dtype = (torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16) if cuda else torch.float32
    tokenizer = AutoTokenizer.from_pretrained(args.model_dir)
    if tokenizer.pad_token is None or tokenizer.pad_token_id == tokenizer.eos_token_id:
        tokenizer.pad_token = "<|endoftext|>"  # SmolLM2's pad = eos = <|im_end|> would mask real chat tokens
    model = AutoModelForSequenceClassification.from_pretrained(args.model_dir, num_labels=1, dtype=dtype)
    model.to("cuda" if cuda else "cpu")
    model.config.pad_token_id = tokenizer.pad_token_id

    def as_messages(prompt):
        return [{"role": "user", "content": prompt}] if isinstance(prompt, str) else prompt

    data = load_dataset("json", data_files=args.train_file, split="train")
    data = data.map(lambda r: {"prompt": as_messages(r["prompt"]),
                               "chosen": [{"role": "assistant", "content": r["chosen"]}],
                               "rejected": [{"role": "assistant", "content": r["rejected"]}]},
                    remove_columns=data.column_names)

    targets = args.targets.split(",")
    config = trl.RewardConfig(
        output_dir=tempfile.mkdtemp(prefix="plain-reward-"), max_steps=args.max_steps,
        per_device_train_batch_size=args.batch_size, gradient_accumulation_steps=1,
        learning_rate=args.learning_rate, logging_steps=1, eval_strategy="no", max_length=args.max_length,
        gradient_checkpointing=False, seed=args.seed, save_strategy="no", report_to=[], disable_tqdm=True,
        dataloader_num_workers=0, bf16=dtype == torch.bfloat16, fp16=dtype == torch.float16, use_cpu=not cuda,
    )
    lora = LoraConfig(r=args.lora_r, lora_alpha=args.lora_alpha, lora_dropout=args.lora_dropout,
                      target_modules="all-linear" if targets == ["all-linear"] else targets, task_type="SEQ_CLS")
    trainer = trl.RewardTrainer(model=model, args=config, train_dataset=data, processing_class=tokenizer,
                                peft_config=lora)
    started = time.perf_counter()
    result = trainer.train()
    wall = time.perf_counter() - started
    print("PLAIN_TRL " + json.dumps({
        "stage": "reward", "train_wall_s": round(wall, 3), "train_runtime_s": round(result.metrics["train_runtime"], 3),
        "steps": trainer.state.global_step, "pairs_in_file": len(data), "pairs_kept": len(trainer.train_dataset),
        "num_tokens": next((row["num_tokens"] for row in reversed(trainer.state.log_history) if "num_tokens" in row),
                           None),
    }), flush=True)


if __name__ == "__main__":
    main()
