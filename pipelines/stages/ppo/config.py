"""The PPO stage's settings: one dataclass, each field with its help, bounds and form group
(shown by `--help`, the forms and the recipes alike)."""

from __future__ import annotations

import typing
from dataclasses import dataclass
from typing import Any

from pipelines.config import BEFORE_PACKING, PACKING, WatchedConfig, setting
from pipelines.errors import ConfigError


@dataclass
class PPOConfig(WatchedConfig):
    """Stage 3: PPO against the judge with a KL penalty to the SFT reference, on one shared base model."""

    stage: typing.ClassVar[str] = "ppo"
    earlier_defaults: typing.ClassVar[dict[str, Any]] = {"value_model": "separate", **BEFORE_PACKING}

    sft_run: str = setting("", "Starting policy and KL reference: an SFT run folder or `latest`. Empty: the bare "
                           "`model`.", group="model")
    reward_run: str = setting("latest", "The judge: a reward run folder or `latest`.", group="model")
    allow_untrusted_judge: bool = setting(
        False, "Use a judge whose held-out accuracy is below its gate. Only for deliberate experiments.",
        group="model",
    )
    prompts_file: str = setting("", "Prompts: `prompt` strings or conversational message lists; a file, a folder, "
                                "or a Hub dataset `owner/name[:config][:split]`.", group="data")
    max_new_tokens: int = setting(48, "Longest sampled response in tokens.", min=1, max=4096, group="generation")
    temperature: float = setting(0.7, "Sampling temperature for rollouts.", min=0.01, max=5.0, group="generation")
    top_p: float = setting(
        1.0, "Nucleus sampling threshold for rollouts. PPO takes 1.0 only: its log-probs, ratio and KL are over the "
        "full softmax, so responses must be sampled from it.", min=0.01, max=1.0, group="generation",
    )
    unfinished_penalty: float = setting(
        -1.0, "Added to the score of a response that never reached end-of-turn.", group="generation"
    )
    kl_coef: float = setting(0.05, "Weight of the per-token KL penalty against the reference.", min=0.0, group="method")
    adaptive_kl: bool = setting(False, "Adapt `kl_coef` to keep the KL near `target_kl`.", group="method")
    target_kl: float = setting(6.0, "KL (per response) the adaptive controller aims for.", min=0.0, group="method")
    kl_horizon: int = setting(10000, "Adaptive controller horizon in samples.", min=1, group="method")
    max_kl: float = setting(50.0, "Stop the run when the mean KL exceeds this bound.", min=0.0, group="method")
    gamma: float = setting(1.0, "Discount factor for GAE.", min=0.0, max=1.0, group="method")
    lam: float = setting(0.95, "Lambda for GAE.", min=0.0, max=1.0, group="method")
    whiten_advantages: bool = setting(True, "Normalise advantages to zero mean and unit variance.", group="method")
    cliprange: float = setting(0.2, "Clip range of the policy ratio.", min=0.0, max=10.0, group="method")
    cliprange_value: float = setting(0.2, "Clip range of the value update.", min=0.0, group="method")
    value_model: str = setting(
        "shared", "The critic. `shared`: a linear value head on the policy's own hidden states (no second pass of "
        "the model; the value loss trains the head alone, so it never bends the policy). `separate`: its own LoRA "
        "adapter and head, one more forward and backward pass per update.", choices=["shared", "separate"],
        group="method",
    )
    vf_coef: float = setting(0.1, "Weight of the value loss.", min=0.0, group="method")
    ppo_epochs: int = setting(2, "Passes over each batch of rollouts.", min=1, max=64, group="method")
    num_minibatches: int = setting(1, "Minibatches per PPO epoch.", min=1, group="method")
    max_grad_norm: float = setting(1.0, "Gradient clipping norm.", min=0.0, group="method")
    packing: bool = setting(True, PACKING + " In PPO: every pass after sampling.")
    sample_every: int = setting(2, "Write a few (prompt, response, score) samples every N steps.", min=1)

    def judge_run(self) -> str:
        return self.reward_run

    def validate(self):
        self.require("prompts_file", "sample_data/prompts_train.jsonl")
        if not self.reward_run:
            raise ConfigError("`reward_run` is empty. Fix: set it to a reward run folder or `latest`.")
        if self.top_p < 1.0:
            # A nucleus-truncated sampler draws from another distribution than the one PPO's ratio and KL are taken
            # over; scoring under the nucleus instead would give the reference -inf log-probs (an infinite KL) for
            # tokens outside its own nucleus. So: one distribution, the full softmax at `temperature`.
            raise ConfigError(f"`top_p` is {self.top_p}, but PPO samples from the full softmax: its log-probs, "
                              "policy ratio and KL penalty are computed over every token, and responses drawn from "
                              "the nucleus alone would make them wrong. Fix: set `top_p: 1.0` (lower `temperature` "
                              "for less random rollouts).")
        if self.batch_size % self.num_minibatches:
            raise ConfigError(f"`batch_size` ({self.batch_size}) must be divisible by `num_minibatches` "
                              f"({self.num_minibatches}). Fix: change one of them.")
