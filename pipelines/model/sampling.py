"""Sampling responses: a plain decode loop over the model's KV cache, and the batches around it (left-padded
prompts in; where each response ends and its text out), shared by PPO, Compare and the studio.

It computes what `model.generate(do_sample=..., temperature=..., top_p=..., top_k=0)` computes, token for token:
the same forward passes (prompt once, then one token per step on the cache), the same positions for left-padded
prompts, the same temperature and nucleus (top-p) filter, finished rows padded with `pad_id`, and a stop once every
row has ended. Greedy decoding gives generate's tokens exactly (tests/test_sampling.py); sampling draws from the
same distribution, with its own use of the random stream.

Why our own: a PPO step samples 8 x 40 tokens from a 135M model, where each decoding step's real work is a few tens
of milliseconds on a CPU, and generate's per-token machinery (logits processors over the whole vocabulary, stopping
criteria, cache and kwargs bookkeeping, `torch.multinomial` over 49k entries) added a large share on top
(benchmarks/sampling.py prints both). The draw here is an inverse-CDF lookup (`searchsorted` on the cumulative
probabilities), which is the same distribution as `multinomial` at a fraction of its cost on a CPU, and the nucleus
filter looks at the top 64 tokens first and sorts the whole vocabulary only when those hold less than `top_p`.
"""

from __future__ import annotations

import inspect
import logging

import torch

from pipelines.data.formats import encode_prompt

log = logging.getLogger("pipelines")

NUCLEUS_CANDIDATES = 64  # top tokens the nucleus is looked for in before sorting the whole vocabulary


@torch.no_grad()
def sample(model, prompt_ids: torch.Tensor, prompt_mask: torch.Tensor, *, max_new_tokens: int, temperature: float,
           top_p: float, eos_ids: list[int], pad_id: int) -> torch.Tensor:
    """(batch, new tokens) continuations of left-padded prompts; temperature 0 is greedy. As wide as the longest
    response: the loop stops once every row has produced an end-of-turn token; later columns of finished rows are
    `pad_id`."""
    batch = prompt_ids.shape[0]
    device = prompt_ids.device
    eos = torch.tensor(eos_ids, dtype=torch.long, device=device)
    keep_last = {"logits_to_keep": 1} if accepts_logits_to_keep(model) else {}
    mask = prompt_mask
    positions = (mask.cumsum(1) - 1).clamp(min=0)  # left padding: each prompt's first real token is position 0
    out = model(input_ids=prompt_ids, attention_mask=mask, position_ids=positions, use_cache=True, **keep_last)
    cache, last_position = out.past_key_values, positions[:, -1:]
    finished = torch.zeros(batch, dtype=torch.bool, device=device)
    tokens = []
    for _ in range(max_new_tokens):
        next_token = pick(out.logits[:, -1].float(), temperature, top_p)
        next_token = torch.where(finished, torch.full_like(next_token, pad_id), next_token)
        tokens.append(next_token)
        finished |= torch.isin(next_token, eos)
        if bool(finished.all()) or len(tokens) == max_new_tokens:
            break
        mask = torch.cat([mask, mask.new_ones(batch, 1)], 1)
        last_position = last_position + 1
        out = model(input_ids=next_token[:, None], attention_mask=mask, position_ids=last_position,
                    past_key_values=cache, use_cache=True, **keep_last)
        cache = out.past_key_values
    if not tokens:
        return prompt_ids.new_zeros(batch, 0)
    return torch.stack(tokens, 1)


def pick(logits: torch.Tensor, temperature: float, top_p: float) -> torch.Tensor:
    """One token per row from (batch, vocabulary) logits: the argmax at temperature 0, else a draw from
    softmax(logits / temperature) restricted to the nucleus."""
    if temperature <= 0:
        return logits.argmax(-1)
    logits = logits / temperature
    if top_p < 1.0:
        logits = nucleus(logits, top_p)
    probs = torch.softmax(logits, -1)
    cumulative = probs.cumsum(-1)
    # the first token whose cumulative probability exceeds a uniform draw: P(token i) = probs[i], as multinomial
    draw = torch.rand(probs.shape[0], 1, device=probs.device, dtype=probs.dtype) * cumulative[:, -1:]
    return torch.searchsorted(cumulative, draw, right=True).squeeze(1).clamp_(max=probs.shape[1] - 1)


def nucleus(logits: torch.Tensor, top_p: float) -> torch.Tensor:
    """Logits outside the nucleus set to -inf, as transformers' TopPLogitsWarper does: a token is kept when the
    probability of the tokens ranked above it is below `top_p` (the top token always). The top
    `NUCLEUS_CANDIDATES` decide it whenever they hold at least `top_p`, which skips sorting the vocabulary."""
    probs = torch.softmax(logits, -1)
    k = min(NUCLEUS_CANDIDATES, logits.shape[-1])
    top, index = probs.topk(k, -1)
    if bool((top.sum(-1) < top_p).any()):  # a flat distribution: the nucleus may reach beyond the candidates
        top, index = probs.sort(-1, descending=True)
    above = top.cumsum(-1) - top  # probability of the tokens ranked above each one
    keep = above < top_p
    keep[:, 0] = True
    filtered = torch.full_like(logits, float("-inf"))
    filtered.scatter_(-1, index, torch.where(keep, logits.gather(-1, index), filtered[:, :index.shape[1]]))
    return filtered


def accepts_logits_to_keep(model) -> bool:
    """Whether the model's forward can compute the LM head on the last position alone (as generate does)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return "logits_to_keep" in inspect.signature(base.forward).parameters


# ---- batches in and out: left-padded prompts, where each response ends, its text ----------------------------


def left_pad(sequences: list[list[int]], pad_id: int, device: str):
    """Token lists as one left-padded batch (ids, mask): every prompt ends at the last column, where sampling goes
    on."""
    width = max(map(len, sequences))
    ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, seq in enumerate(sequences):
        ids[i, width - len(seq):], mask[i, width - len(seq):] = torch.tensor(seq), 1
    return ids.to(device), mask.to(device)


def response_mask(responses: torch.Tensor, eos_ids: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """1 up to and including the first end-of-turn token; and whether each response finished at all."""
    is_eos = torch.isin(responses, torch.tensor(eos_ids, device=responses.device))
    finished = is_eos.any(1)
    first = torch.where(finished, is_eos.float().argmax(1), torch.full_like(finished, responses.shape[1] - 1,
                                                                            dtype=torch.long))
    positions = torch.arange(responses.shape[1], device=responses.device)
    return (positions[None, :] <= first[:, None]).long(), finished


def generate(roles, adapters: list[str], prompt_ids, prompt_mask, tokenizer, *, max_new_tokens: int,
             temperature: float, top_p: float, eos_ids: list[int]) -> torch.Tensor:
    """Sampled (or greedy, temperature 0) responses from the model `adapters` select on `roles` (anything holding
    a PEFT `model` and `frozen(adapters)`: PPO's SharedRoles, Compare's contestants). As wide as the longest one:
    sampling stops once every response has ended, and the columns after that would be padding that every later
    pass skips by mask anyway."""
    with roles.frozen(adapters):
        return sample(roles.model, prompt_ids, prompt_mask, max_new_tokens=max_new_tokens, temperature=temperature,
                      top_p=top_p, eos_ids=eos_ids, pad_id=tokenizer.pad_token_id)


def sample_responses(contestants, adapters: list[str], prompts: list[dict], tokenizer, *, batch_size: int,
                     seed: int | None, max_new_tokens: int, temperature: float, top_p: float,
                     log_as: str = "") -> tuple[list[str], list[bool]]:
    """One response per prompt record from the model that `adapters` select on `contestants` ([] = the bare base;
    see `generate`), in batches, and whether each was cut off at `max_new_tokens` (it never ended its turn). Each
    batch starts from `seed + its first index`, so two models given the same seed draw from the same random stream;
    `seed` None leaves the random state alone (greedy answers inside a training loop)."""
    eos_ids = end_of_turn_ids(tokenizer)
    device = next(contestants.model.parameters()).device
    texts: list[str] = []
    cut_off: list[bool] = []
    for start in range(0, len(prompts), max(1, batch_size)):
        chunk = prompts[start:start + max(1, batch_size)]
        ids, mask = left_pad([encode_prompt(tokenizer, p["prompt"]) for p in chunk], tokenizer.pad_token_id, device)
        if seed is not None:
            torch.manual_seed(seed + start)
        out = generate(contestants, adapters, ids, mask, tokenizer, max_new_tokens=max_new_tokens,
                       temperature=temperature, top_p=top_p, eos_ids=eos_ids)
        mask, finished = response_mask(out, eos_ids)
        texts += decode_responses(tokenizer, out, mask)
        cut_off += (~finished).tolist()
        if log_as:
            log.info("%s: %d/%d prompts answered", log_as, len(texts), len(prompts))
    return texts, cut_off


def end_of_turn_ids(tokenizer) -> list[int]:
    ids = {tokenizer.eos_token_id}
    for token in ("<|im_end|>", "<|eot_id|>", "<|end|>", "<end_of_turn>"):
        token_id = tokenizer.convert_tokens_to_ids(token)
        if isinstance(token_id, int) and token_id != tokenizer.unk_token_id:
            ids.add(token_id)
    return sorted(i for i in ids if i is not None)


def decode_responses(tokenizer, responses, mask) -> list[str]:
    return [tokenizer.decode(r[m.bool()], skip_special_tokens=True).strip() for r, m in zip(responses, mask)]
