"""PPO memory: the workbench's shared-adapter layout against four separately loaded models.

    shared    pipelines.stages.ppo.roles.SharedRoles: ONE base; policy, reference, value and judge are LoRA adapters
              on it
    separate  the classic layout (TRL's former PPOTrainer): policy (base + SFT adapter, trainable), reference
              (another base + SFT adapter, frozen), value (a third base, sequence-classification head + its own
              LoRA) and reward model (a fourth base, loaded as pipelines.model.judge.Judge does) each with
              transformers/peft

Each layout does the same work on the same batch: one rollout of `--batch-size` prompts with exactly
`--max-new-tokens` sampled tokens each (min_new_tokens = max_new_tokens, so both layouts generate the same number
of tokens whatever they sample), the judge's scores, policy / reference log-probs and values, GAE, then one
PPO update (clipped policy loss + clipped value loss, backward, AdamW step) on the whole batch.

Run one layout per process, so each peak is its own:

    python benchmarks/ppo_memory.py --layout shared   --sft-run RUN --reward-run RUN
    python benchmarks/ppo_memory.py --layout separate --sft-run RUN --reward-run RUN

RUN folders are a finished SFT run and a reward run trained from it on the same base (benchmarks/run.py passes
the ones it just made). Prints one line `PPO_MEMORY {json}`: peak RSS (VmHWM) on any device, and peak allocated
VRAM on CUDA, after loading and after the step, with the load and step times.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")


def proc_status_mb(field: str) -> float | None:
    """VmRSS (now) or VmHWM (peak) of this process, in MiB."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return None


class Shared:
    """Every role on one base, exactly as `python -m pipelines ppo` builds it."""

    def __init__(self, cfg, base_path, device, sft_run, reward_run, pad_id):
        from pipelines.stages.ppo.roles import SharedRoles

        self.roles = SharedRoles(cfg, base_path, device, sft_run, reward_run)
        if self.roles.judge_adapters is None:
            raise SystemExit("the reward run does not share the SFT run's base: the shared layout cannot hold it")
        self.models = [self.roles.model]
        self.extra = [self.roles.value_head, self.roles.score_head]

    def generate(self, **kwargs):
        with self.roles.use(["policy"]):
            return self.roles.model.generate(**kwargs)

    def policy_logits(self, ids, mask, width, temperature, trainable=False):
        with self.roles.use(["policy"], trainable=trainable):
            return self.response_logits(ids, mask, width, temperature)

    def reference_logits(self, ids, mask, width, temperature):
        with self.roles.use(self.roles.reference):
            return self.response_logits(ids, mask, width, temperature)

    def response_logits(self, ids, mask, width, temperature):
        return response_logits(self.roles.model.get_base_model(), ids, mask, width, temperature)

    def values(self, ids, mask, width, trainable=False):
        with self.roles.use(["value"], trainable=trainable):
            return self.roles.values(ids, mask, width)

    def judge(self, sequences, pad_id):
        return self.roles.judge_scores(sequences, pad_id)

    def trainable_parameters(self):
        return list(self.roles.trainable_parameters().values())


def response_logits(causal, ids, mask, width, temperature):
    """The LM head on every response position (the same work in both layouts)."""
    positions = (mask.cumsum(1) - 1).clamp(min=0)
    hidden = causal.get_decoder()(input_ids=ids, attention_mask=mask, position_ids=positions).last_hidden_state
    return causal.get_output_embeddings()(hidden[:, width - 1:-1]).float() / temperature


class Separate:
    """Policy, reference, value and reward model, each a whole model of its own."""

    def __init__(self, cfg, base_path, device, sft_run, reward_run, pad_id):
        from peft import PeftModel, get_peft_model

        from pipelines.model.loading import load_base, lora_config, merge_adapter, prepare_for_kbit
        from pipelines.runtime.runs import Run

        self.device = device
        self.policy = PeftModel.from_pretrained(prepare_for_kbit(load_base(cfg, base_path, device=device), cfg),
                                                sft_run.adapter_dir, is_trainable=True).eval()
        self.reference = PeftModel.from_pretrained(load_base(cfg, base_path, device=device), sft_run.adapter_dir,
                                                   is_trainable=False).eval()
        for p in self.reference.parameters():
            p.requires_grad_(False)
        value_base = prepare_for_kbit(load_base(cfg, base_path, head="score", device=device), cfg)
        self.value = get_peft_model(value_base, lora_config(cfg, "SEQ_CLS", value_base, dropout=0.0)).eval()
        # The reward model as pipelines.model.judge.Judge loads it (score head, the SFT adapter merged in, the reward
        # adapter on top), but with this benchmark's quantization, as the shared layout's judge has.
        judge = load_base(cfg, base_path, head="score", device=device)
        if reward_run.config().get("sft_run"):
            judge = merge_adapter(judge, Run(reward_run.config()["sft_run"]).adapter_dir)
        judge.config.pad_token_id = pad_id
        self.judge_model = PeftModel.from_pretrained(judge, reward_run.adapter_dir).eval()
        self.models = [self.policy, self.reference, self.value, self.judge_model]
        self.extra = []

    def generate(self, **kwargs):
        return self.policy.generate(**kwargs)

    def policy_logits(self, ids, mask, width, temperature, trainable=False):
        return response_logits(self.policy.get_base_model(), ids, mask, width, temperature)

    def reference_logits(self, ids, mask, width, temperature):
        return response_logits(self.reference.get_base_model(), ids, mask, width, temperature)

    def values(self, ids, mask, width, trainable=False):
        inner = self.value.get_base_model()  # LoRA layers are injected in place; `score` is the trainable head
        positions = (mask.cumsum(1) - 1).clamp(min=0)
        hidden = inner.model(input_ids=ids, attention_mask=mask, position_ids=positions).last_hidden_state
        return inner.score(hidden[:, width - 1:-1]).float().squeeze(-1)

    def judge(self, sequences, pad_id):
        from pipelines.model.judge import score_ids

        return score_ids(self.judge_model, sequences, pad_id, batch_size=len(sequences))

    def trainable_parameters(self):
        return [p for m in (self.policy, self.value) for p in m.parameters() if p.requires_grad]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--layout", choices=["shared", "separate"], required=True)
    p.add_argument("--sft-run", required=True, help="a finished SFT run folder")
    p.add_argument("--reward-run", required=True, help="a finished reward run trained from that SFT run")
    p.add_argument("--prompts-file", default=str(ROOT / "sample_data" / "prompts_train.jsonl"))
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--max-new-tokens", type=int, default=40)
    p.add_argument("--temperature", type=float, default=0.7)
    p.add_argument("--quantization", choices=["none", "8bit", "4bit"], default="none")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    p.add_argument("--seed", type=int, default=42)
    args = p.parse_args()

    import torch

    from pipelines.cli import quiet_libraries
    from pipelines.stages.ppo.config import PPOConfig
    from pipelines.data.formats import encode_prompt, load_checked
    from pipelines.model.loading import load_tokenizer, pick_device, resolve_model
    from pipelines.model.sampling import decode_responses, end_of_turn_ids, left_pad, response_mask
    from pipelines.stages.ppo.core import gae, logprobs_of, kl_k1, policy_loss, token_rewards, value_loss, whiten
    from pipelines.model.judge import encode_for_judge
    from pipelines.runtime.runs import Run

    quiet_libraries()
    sft_run, reward_run = Run(Path(args.sft_run).resolve()), Run(Path(args.reward_run).resolve())
    base_name = sft_run.config().get("model", "default")
    cfg = PPOConfig.from_dict({"model": base_name, "quantization": args.quantization, "device": args.device,
                               "sft_run": str(sft_run.path), "reward_run": str(reward_run.path),
                               "prompts_file": args.prompts_file, "batch_size": args.batch_size,
                               "max_new_tokens": args.max_new_tokens, "temperature": args.temperature,
                               "ppo_epochs": 1, "seed": args.seed,
                               # both layouts hold a critic of its own: the comparison is one base against four
                               "value_model": "separate"})
    device = pick_device(cfg.device)
    cuda = device == "cuda"
    base_path = resolve_model(base_name)
    tokenizer = load_tokenizer(str(sft_run.adapter_dir))
    tokenizer.padding_side = "left"
    prompts = load_checked("prompts", cfg.prompts_file)
    batch = [prompts[i % len(prompts)] for i in range(args.batch_size)]
    judge_max_length = int(reward_run.config().get("max_length", 256))
    rss_before = proc_status_mb("VmRSS")

    started = time.perf_counter()
    kind = Shared if args.layout == "shared" else Separate
    layout = kind(cfg, base_path, device, sft_run, reward_run, tokenizer.pad_token_id)
    load_s = time.perf_counter() - started
    if cuda:
        torch.cuda.synchronize()
    params = {id(t): t.numel() for m in layout.models for t in m.parameters()}
    params.update({id(t): t.numel() for m in layout.extra if m is not None for t in m.parameters()})
    after_load = {"rss_mb": proc_status_mb("VmRSS"),
                  "vram_allocated_mb": round(torch.cuda.memory_allocated() / 2**20, 1) if cuda else None}

    # ---- one PPO step ----
    torch.manual_seed(args.seed)
    started = time.perf_counter()
    eos_ids = end_of_turn_ids(tokenizer)
    prompt_ids, prompt_mask = left_pad([encode_prompt(tokenizer, r["prompt"]) for r in batch],
                                       tokenizer.pad_token_id, device)
    with torch.no_grad():
        out = layout.generate(input_ids=prompt_ids, attention_mask=prompt_mask, max_new_tokens=args.max_new_tokens,
                              min_new_tokens=args.max_new_tokens, do_sample=True, temperature=args.temperature,
                              top_p=1.0, top_k=0, eos_token_id=eos_ids, pad_token_id=tokenizer.pad_token_id)
    responses = out[:, prompt_ids.shape[1]:]
    mask, _ = response_mask(responses, eos_ids)
    ids, attn, width = torch.cat([prompt_ids, responses], 1), torch.cat([prompt_mask, mask], 1), prompt_ids.shape[1]
    texts = decode_responses(tokenizer, responses, mask)
    judged = [encode_for_judge(tokenizer, r["prompt"], t, judge_max_length) for r, t in zip(batch, texts)]
    scores = torch.tensor(layout.judge(judged, tokenizer.pad_token_id), dtype=torch.float, device=device)
    with torch.no_grad():
        old_logprobs = logprobs_of(layout.policy_logits(ids, attn, width, cfg.temperature), responses)
        ref_logprobs = logprobs_of(layout.reference_logits(ids, attn, width, cfg.temperature), responses)
        old_values = layout.values(ids, attn, width)
        kl = kl_k1(old_logprobs, ref_logprobs) * mask
        rewards = token_rewards(scores, kl, mask.float(), cfg.kl_coef)
        advantages, returns = gae(rewards, old_values, mask.float(), cfg.gamma, cfg.lam)
        advantages = whiten(advantages, mask.float())
    params_trainable = layout.trainable_parameters()
    optimizer = torch.optim.AdamW(params_trainable, lr=cfg.learning_rate, eps=1e-5)
    new_logprobs = logprobs_of(layout.policy_logits(ids, attn, width, cfg.temperature, trainable=True), responses)
    pg_loss, _ = policy_loss(new_logprobs, old_logprobs, advantages, mask.float(), cfg.cliprange)
    pg_loss.backward()
    vf_loss, _ = value_loss(layout.values(ids, attn, width, trainable=True), old_values, returns, mask.float(),
                            cfg.cliprange_value)
    (cfg.vf_coef * vf_loss).backward()
    torch.nn.utils.clip_grad_norm_(params_trainable, cfg.max_grad_norm)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    if cuda:
        torch.cuda.synchronize()
    step_s = time.perf_counter() - started

    print("PPO_MEMORY " + json.dumps({
        "layout": args.layout, "device": device, "quantization": args.quantization, "batch_size": args.batch_size,
        "new_tokens": int(mask.sum().item()), "response_tokens_each": args.max_new_tokens,
        "parameters_m": round(sum(params.values()) / 1e6, 1),
        "trainable_parameters_m": round(sum(p.numel() for p in params_trainable) / 1e6, 2),
        "rss_before_load_mb": rss_before, "rss_after_load_mb": after_load["rss_mb"],
        "peak_rss_mb": max(proc_status_mb("VmHWM") or 0,
                           round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)),
        "vram_after_load_mb": after_load["vram_allocated_mb"],
        "peak_vram_mb": round(torch.cuda.max_memory_allocated() / 2**20, 1) if cuda else None,
        "load_s": round(load_s, 2), "step_s": round(step_s, 2),
        "policy_loss": round(pg_loss.item(), 5), "value_loss": round(vf_loss.item(), 5),
    }), flush=True)


if __name__ == "__main__":
    main()
