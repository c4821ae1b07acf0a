"""The arithmetic of PPO for language models, free of models and I/O so each piece is tested by hand.

Shapes: (batch, response_tokens). `mask` is 1 on real response tokens (up to and including end-of-turn) and 0 on
padding after it. Conventions follow the RLHF papers and TRL's former PPO trainer (Ziegler et al. 2019;
Stiennon et al. 2020; Huang et al. 2024, "The N+ implementation details of RLHF with PPO").
"""

from __future__ import annotations

import torch


def masked_mean(x: torch.Tensor, mask: torch.Tensor, dim=None) -> torch.Tensor:
    if dim is None:
        return (x * mask).sum() / mask.sum().clamp(min=1)
    return (x * mask).sum(dim) / mask.sum(dim).clamp(min=1)


def masked_var(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Unbiased variance over the masked entries."""
    mean = masked_mean(x, mask)
    n = mask.sum()
    return ((x - mean) ** 2 * mask).sum() / (n - 1).clamp(min=1)


def whiten(x: torch.Tensor, mask: torch.Tensor, shift_mean: bool = True, total=None) -> torch.Tensor:
    """Zero mean (optionally kept), unit variance over the masked entries; padding stays 0.

    `total(t)` sums a tensor over every process of a data-parallel run, so the statistics are those of the global
    batch (pipelines.runtime.distributed.sum_over_ranks); without it, of this batch alone."""
    if total is None:
        mean, var = masked_mean(x, mask), masked_var(x, mask)
    else:
        n = total(mask.sum())
        mean = total((x * mask).sum()) / n.clamp(min=1)
        var = total(((x - mean) ** 2 * mask).sum()) / (n - 1).clamp(min=1)
    out = (x - mean) * torch.rsqrt(var + 1e-8)
    if not shift_mean:
        out = out + mean
    return out * mask


def logprobs_of(logits: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """log p(token) under logits (..., vocab), gathered per position."""
    return torch.gather(logits.float().log_softmax(-1), -1, tokens.unsqueeze(-1)).squeeze(-1)


def entropy_of(logits: torch.Tensor) -> torch.Tensor:
    logp = logits.float().log_softmax(-1)
    return -(logp.exp() * logp).sum(-1)


def kl_k1(logprobs: torch.Tensor, ref_logprobs: torch.Tensor) -> torch.Tensor:
    """log(pi/ref) per token: unbiased, can be negative per sample; the penalty's estimator."""
    return logprobs - ref_logprobs


def kl_k3(logprobs: torch.Tensor, ref_logprobs: torch.Tensor) -> torch.Tensor:
    """(r - 1) - log r with r = ref/pi: unbiased and never negative (Schulman, "Approximating KL")."""
    log_r = ref_logprobs - logprobs
    return torch.expm1(log_r) - log_r


def token_rewards(scores: torch.Tensor, kl: torch.Tensor, mask: torch.Tensor, kl_coef: float) -> torch.Tensor:
    """-kl_coef * KL on every token, plus the judge's score on the last real token."""
    rewards = -kl_coef * kl * mask
    last = (mask.sum(1) - 1).clamp(min=0).long()
    rewards[torch.arange(len(scores)), last] += scores
    return rewards


def gae(rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float, lam: float):
    """Generalised advantage estimation, backwards over the response; returns (advantages, returns)."""
    values = values * mask
    advantages = torch.zeros_like(rewards)
    last = torch.zeros(rewards.shape[0], dtype=rewards.dtype, device=rewards.device)
    for t in reversed(range(rewards.shape[1])):
        next_value = values[:, t + 1] if t + 1 < rewards.shape[1] else torch.zeros_like(last)
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        last = (delta + gamma * lam * last) * mask[:, t]
        advantages[:, t] = last
    return advantages, (advantages + values) * mask


def policy_loss(logprobs, old_logprobs, advantages, mask, cliprange: float):
    """The clipped surrogate objective (as a loss), with the statistics users watch."""
    log_ratio = logprobs - old_logprobs
    ratio = log_ratio.exp()
    unclipped = -advantages * ratio
    clipped = -advantages * ratio.clamp(1 - cliprange, 1 + cliprange)
    loss = masked_mean(torch.maximum(unclipped, clipped), mask)
    with torch.no_grad():
        stats = {"policy/clipfrac": masked_mean((clipped > unclipped).float(), mask).item(),
                 "policy/approxkl": (0.5 * masked_mean(log_ratio ** 2, mask)).item(),
                 "val/ratio": masked_mean(ratio, mask).item()}
    return loss, stats


def value_loss(values, old_values, returns, mask, cliprange_value: float):
    """Clipped value loss: the value may move at most `cliprange_value` from its rollout estimate per update."""
    clipped = old_values + (values - old_values).clamp(-cliprange_value, cliprange_value)
    loss = 0.5 * masked_mean(torch.maximum((values - returns) ** 2, (clipped - returns) ** 2), mask)
    with torch.no_grad():
        clipfrac = masked_mean(((values - returns) ** 2 < (clipped - returns) ** 2).float(), mask).item()
    return loss, {"val/clipfrac": clipfrac}


def minibatches(batch_size: int, num_minibatches: int) -> list[torch.Tensor]:
    """One PPO epoch's minibatches: the batch shuffled once and split into disjoint parts, so each rollout is used
    exactly once per epoch. One minibatch is the whole batch in order (no random draw)."""
    if num_minibatches == 1:
        return [torch.arange(batch_size)]
    return list(torch.randperm(batch_size).chunk(num_minibatches))


class KLController:
    """Fixed, or adaptive (Ziegler et al. 2019): nudge the coefficient so the KL tracks a target."""

    def __init__(self, coef: float, adaptive: bool = False, target: float = 6.0, horizon: int = 10000):
        self.value, self.adaptive, self.target, self.horizon = coef, adaptive, target, horizon

    def update(self, current_kl: float, n_samples: int) -> None:
        if not self.adaptive or self.target <= 0:
            return
        error = max(-0.2, min(0.2, current_kl / self.target - 1))
        self.value *= 1 + error * n_samples / self.horizon
