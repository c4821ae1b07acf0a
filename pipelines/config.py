"""One dataclass per stage: the single source of truth for every setting.

Each field's `metadata` carries its help text (shown by `--help`, the UI forms and the docs) and its bounds
or choices, so validation lives in one place: `StageConfig.__post_init__`. YAML recipes and `--set key=value`
use the field names unchanged, in the alignment-handbook style.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib.util
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from pipelines.errors import ConfigError


def setting(default, help, *, choices=None, min=None, max=None, group="training"):
    """A dataclass field with its help text, bounds and UI group in one place."""
    meta = {"help": help, "group": group}
    if choices is not None:
        meta["choices"] = list(choices)
    if min is not None:
        meta["min"] = min
    if max is not None:
        meta["max"] = max
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata=meta)
    return field(default=default, metadata=meta)


DEFAULT_LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj"]  # the attention projections, by Llama's names


@dataclass
class StageConfig:
    """Settings every stage shares: the base model, how it is loaded, and the LoRA adapter trained on it."""

    model: str = setting(
        "default",
        "Base model: `default` (the embedded SmolLM2-135M-Instruct, works offline), a Hugging Face Hub id, or a "
        "local folder.",
        group="model",
    )
    trust_remote_code: bool = setting(
        False, "Run custom modelling code shipped with a Hub model. Only enable for models you trust.", group="model"
    )
    quantization: str = setting(
        "none",
        "Load the frozen base in 8-bit or 4-bit NF4 (QLoRA) with bitsandbytes to save memory.",
        choices=["none", "8bit", "4bit"],
        group="model",
    )
    device: str = setting(
        "auto", "Where to run: `auto` picks CUDA when present, else the CPU.", choices=["auto", "cpu", "cuda"],
        group="model",
    )
    lora_r: int = setting(16, "LoRA rank: the size of the trainable update.", min=1, max=1024, group="lora")
    lora_alpha: int = setting(32, "LoRA scaling numerator (update is scaled by alpha / r).", min=1, group="lora")
    lora_dropout: float = setting(0.05, "Dropout on the LoRA path during training.", min=0.0, max=0.9, group="lora")
    lora_target_modules: list[str] = setting(
        DEFAULT_LORA_TARGETS,
        "Module names that get LoRA adapters, or [all-linear]. The default means the attention projections: a "
        "family that names them otherwise gets its own (Phi-3's fused `qkv_proj`, `o_proj`). A name the model lacks "
        "is refused, with the names it has; the log and the summary list what was adapted.",
        group="lora",
    )
    max_length: int = setting(256, "Longest sequence in tokens (prompt + response).", min=16, max=131072)
    learning_rate: float = setting(2e-4, "Peak learning rate of the adapter.", min=0.0, max=1.0)
    max_steps: int = setting(60, "Number of optimizer steps.", min=1, max=1_000_000)
    batch_size: int = setting(4, "Examples per device per step.", min=1, max=4096)
    gradient_accumulation_steps: int = setting(1, "Micro-batches summed into one optimizer step.", min=1, max=1024)
    gradient_checkpointing: bool = setting(False, "Trade compute for memory by recomputing activations.")
    logging_steps: int = setting(1, "Log metrics every N steps.", min=1)
    seed: int = setting(42, "Random seed for data order, initialisation and sampling.")
    run_name: str = setting("", "Optional label shown next to the run id.", group="run")
    column_map: list[str] = setting(
        [], "Rename the data's fields before reading them, as from=to pairs, for datasets whose fields have other "
        "names, e.g. `question=prompt, response_j=chosen, response_k=rejected`. Applies to every data field of the "
        "stage.", group="data",
    )

    stage: typing.ClassVar[str] = ""
    earlier_defaults: typing.ClassVar[dict[str, Any]] = {}  # see load_saved

    def __post_init__(self):
        hints = typing.get_type_hints(type(self))
        for f in dataclasses.fields(self):
            setattr(self, f.name, _coerce(f.name, hints[f.name], getattr(self, f.name)))
            meta = f.metadata
            value = getattr(self, f.name)
            if "choices" in meta and value not in meta["choices"]:
                raise ConfigError(
                    f"`{f.name}` is {value!r}, which is not one of {meta['choices']}. Fix: set `{f.name}` to one of "
                    "those values."
                )
            if "min" in meta and value < meta["min"]:
                raise ConfigError(f"`{f.name}` is {value}, below its minimum {meta['min']}. Fix: use a value >= "
                                  f"{meta['min']}.")
            if "max" in meta and value > meta["max"]:
                raise ConfigError(f"`{f.name}` is {value}, above its maximum {meta['max']}. Fix: use a value <= "
                                  f"{meta['max']}.")
        from pipelines.data import parse_column_map

        parse_column_map(self.column_map)  # a malformed pair is named here, before any run
        if not self.lora_target_modules:
            raise ConfigError("`lora_target_modules` is empty. Fix: name the modules to adapt, e.g. "
                              "`q_proj, k_proj, v_proj, o_proj`, or `all-linear`.")
        self.validate()

    def validate(self):
        """Checks that involve several fields; stages extend it."""

    # ---- reading and writing -------------------------------------------------------------------------------

    @classmethod
    def from_dict(cls, values: dict[str, Any], source: str = "the config") -> "StageConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        for key in values:
            if key not in known:
                close = difflib.get_close_matches(key, known, n=1)
                hint = f" Did you mean `{close[0]}`?" if close else f" Known keys: {', '.join(sorted(known))}."
                raise ConfigError(f"Unknown key `{key}` in {source} for stage `{cls.stage}`.{hint}")
        return cls(**values)

    @classmethod
    def load_saved(cls, path: str | Path, overrides: list[str] = ()) -> "StageConfig":
        """A run's own config.yaml. A setting it lacks was added after the run started: the run was trained with the
        behaviour from before, `earlier_defaults`, not today's default."""
        saved = read_yaml(path)
        earlier = [f"{key}={value}" for key, value in cls.earlier_defaults.items() if key not in saved]
        return cls.load(path, [*earlier, *overrides])

    @classmethod
    def load(cls, path: str | Path | None = None, overrides: list[str] = ()) -> "StageConfig":
        values = read_yaml(path) if path else {}
        source = f"{path}" if path else "the settings"
        values.pop("stage", None)  # recipes may say which stage they are for
        for item in overrides:
            key, sep, raw = item.partition("=")
            if not sep or not key.strip():
                raise ConfigError(f"`--set {item}` is not of the form key=value. Fix: write e.g. `--set max_steps=20`.")
            values[key.strip()] = yaml.safe_load(raw) if raw.strip() else ""
        return cls.from_dict(values, source)

    def to_dict(self) -> dict[str, Any]:
        return {"stage": self.stage, **dataclasses.asdict(self)}

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)


def read_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"Config file `{path}` does not exist. Fix: pass the path of a YAML recipe, e.g. "
                          "`sample_data/recipes/sft_quick.yaml`.")
    try:
        values = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise ConfigError(f"Config file `{path}` is not valid YAML{where}: {exc}. Fix the syntax there.") from None
    except UnicodeDecodeError:
        raise ConfigError(f"Config file `{path}` is not UTF-8 text. Fix: save it as UTF-8.") from None
    if not isinstance(values, dict):
        raise ConfigError(f"Config file `{path}` must hold a mapping of `key: value` lines, not a "
                          f"{type(values).__name__}.")
    return values


def _coerce(name: str, kind: type, value: Any) -> Any:
    """Accept what YAML and `--set` produce (ints for floats, a comma list for a list) and nothing else."""
    if typing.get_origin(kind) is list:
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return value
        raise ConfigError(f"`{name}` must be a list of names, got {value!r}. Fix: write e.g. "
                          f"`{name}: [q_proj, v_proj]`.")
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if kind is str and value is None:
        return ""
    if kind is str and isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ConfigError(f"`{name}` must be {kind.__name__}, got {value!r} ({type(value).__name__}). Fix: set "
                          f"`{name}` to a {kind.__name__}.")
    return value


# ---- the stages ------------------------------------------------------------------------------------------------


TRACKER_PACKAGES = {"none": None, "tensorboard": "tensorboard", "wandb": "wandb", "trackio": "trackio"}


@dataclass
class TrainingConfig(StageConfig):
    """A stage that trains: it checkpoints into its run directory and can be resumed (`python -m pipelines resume`).
    Every training stage, present and future, derives from this class and so gets the same checkpoint settings."""

    save_steps: int = setting(
        0, "Checkpoint every N steps (0: four checkpoints over the run). A checkpoint holds everything needed to "
        "resume: adapters, optimizer, RNG and data position.", min=0, group="checkpoints",
    )
    save_minutes: float = setting(
        10.0, "Also checkpoint when this many minutes of training passed since the last checkpoint (0: off), so a "
        "long run never loses more than this.", min=0.0, group="checkpoints",
    )
    save_total_limit: int = setting(2, "Keep only the newest N checkpoints.", min=1, max=1000, group="checkpoints")
    report_to: str = setting(
        "none", "Also send the metrics to an experiment tracker: `tensorboard` (event files in the run's "
        "`tensorboard/` folder), `wandb` or `trackio` (their own project settings and login). The package must be "
        "installed: `pip install tensorboard` (or wandb, trackio).", choices=list(TRACKER_PACKAGES), group="run",
    )

    # What `resume --set` may change: schedule, bookkeeping and guards. Anything else (model, LoRA shape, data, batch,
    # learning rate, seed...) would not continue the same run; `resume` refuses it and names the field.
    resumable_changes: typing.ClassVar[tuple[str, ...]] = (
        "max_steps", "save_steps", "save_minutes", "save_total_limit", "logging_steps", "eval_steps", "sample_every",
        "max_kl", "run_name", "report_to",
    )

    def __post_init__(self):
        super().__post_init__()
        package = TRACKER_PACKAGES[self.report_to]
        if package and importlib.util.find_spec(package) is None:
            raise ConfigError(f"`report_to` is `{self.report_to}`, but the `{package}` package is not installed. "
                              f"Fix: `pip install {package}` (into the workbench's environment: `.venv/bin/pip "
                              f"install {package}`), or set `report_to: none`.")

    def checkpoint_every(self) -> int:
        return self.save_steps or max(1, -(-self.max_steps // 4))


PACKING = ("Compute only the real tokens of each batch: no padding, and what several sequences start with alike (a "
           "chat template's system turn, the prompt both answers of a pair share) computed once. Same numbers up to "
           "rounding; checked at start, and off by itself for a model that cannot.")
BEFORE_PACKING = {"packing": False}  # a run saved before the setting existed trained on padded batches
MIN_PROMPT_TOKENS = ("When a pair is too long, the prompt is cut from the left down to at least this many tokens "
                     "(both answers stay whole); pairs still too long are dropped. Both are counted in the log and "
                     "the summary.")


@dataclass
class SFTConfig(TrainingConfig):
    """Stage 1: supervised fine-tuning on instruction-response examples."""

    stage: typing.ClassVar[str] = "sft"
    earlier_defaults: typing.ClassVar[dict[str, Any]] = BEFORE_PACKING

    train_file: str = setting("", "Training data: a JSONL, JSON, CSV or Parquet file, a `datasets` folder, or a "
                              "Hub dataset `owner/name[:config][:split]` (split default `train`).", group="data")
    eval_file: str = setting("", "Optional held-out data in the same formats, evaluated every `eval_steps`.",
                             group="data")
    completion_only_loss: bool = setting(
        True, "Train only on the response tokens, not on the prompt (recommended).", group="data"
    )
    eval_steps: int = setting(0, "Evaluate on `eval_file` every N steps (0: only at the end).", min=0)
    packing: bool = setting(True, PACKING)

    def validate(self):
        if not self.train_file:
            raise ConfigError("`train_file` is empty. Fix: set `train_file` to your SFT data, e.g. "
                              "`--set train_file=sample_data/sft_train.jsonl`.")


@dataclass
class RewardConfig(TrainingConfig):
    """Stage 2: a reward model (the judge) trained on pairwise preferences, used pointwise."""

    stage: typing.ClassVar[str] = "reward"
    earlier_defaults: typing.ClassVar[dict[str, Any]] = BEFORE_PACKING

    sft_run: str = setting(
        "", "Start from an SFT run's model instead of the bare base (a run folder, or `latest`). Empty: use `model`.",
        group="model",
    )
    train_file: str = setting("", "Preference pairs: prompt/chosen/rejected, or chosen/rejected transcripts; a "
                              "file, a folder, or a Hub dataset `owner/name[:config][:split]`.", group="data")
    eval_file: str = setting("", "Held-out pairs. Empty: hold out `eval_split` of the training file.", group="data")
    eval_split: float = setting(0.1, "Share of training pairs held out when `eval_file` is empty.", min=0.0,
                                max=0.5, group="data")
    eval_steps: int = setting(20, "Evaluate held-out accuracy every N steps (0: only at the end).", min=0)
    accuracy_gate: float = setting(0.70, "Held-out accuracy a judge needs before PPO may use it.", min=0.0,
                                   max=1.0)
    labeler_instruction: str = setting(
        "", "What the people who labeled the pairs were asked to judge, in one sentence: a judge learns that and "
        "nothing else, and Compare says so beside its scores. Empty: taken from the data (a `labeler_instruction` "
        "field, or the quote under a 'What the labeler was asked to judge' heading in a README.md beside it).",
        group="data",
    )
    min_prompt_tokens: int = setting(8, MIN_PROMPT_TOKENS, min=0, group="data")
    packing: bool = setting(True, PACKING)

    def validate(self):
        if not self.train_file:
            raise ConfigError("`train_file` is empty. Fix: set `train_file` to your preference pairs, e.g. "
                              "`--set train_file=sample_data/prefs_train.jsonl`.")


STARTING_SFT_RUN = ("Start from an SFT run's model (a run folder, or `latest`); it is also the reference the KL is "
                    "measured against. Empty: the bare base of `model`.")


@dataclass
class DPOConfig(TrainingConfig):
    """Direct Preference Optimization: the model learns from the preference pairs themselves, no judge, no sampling."""

    stage: typing.ClassVar[str] = "dpo"
    earlier_defaults: typing.ClassVar[dict[str, Any]] = BEFORE_PACKING

    sft_run: str = setting("", STARTING_SFT_RUN, group="model")
    train_file: str = setting("", "Preference pairs: prompt/chosen/rejected, or chosen/rejected transcripts; a "
                              "file, a folder, or a Hub dataset `owner/name[:config][:split]`.", group="data")
    eval_file: str = setting("", "Held-out pairs: their preference accuracy is charted beside the training one.",
                             group="data")
    eval_steps: int = setting(20, "Evaluate on the held-out pairs every N steps (0: only at the end).", min=0)
    beta: float = setting(0.1, "How far the model may move from the reference: a smaller beta lets it drift more "
                          "(DPO's KL weight; at 0 the loss would not depend on the model).", min=0.001, max=10.0)
    min_prompt_tokens: int = setting(8, MIN_PROMPT_TOKENS, min=0, group="data")
    packing: bool = setting(True, PACKING)

    def validate(self):
        if not self.train_file:
            raise ConfigError("`train_file` is empty. Fix: set `train_file` to your preference pairs, e.g. "
                              "`--set train_file=sample_data/prefs_train.jsonl`.")


@dataclass
class PPOConfig(TrainingConfig):
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
    kl_coef: float = setting(0.05, "Weight of the per-token KL penalty against the reference.", min=0.0, group="ppo")
    adaptive_kl: bool = setting(False, "Adapt `kl_coef` to keep the KL near `target_kl`.", group="ppo")
    target_kl: float = setting(6.0, "KL (per response) the adaptive controller aims for.", min=0.0, group="ppo")
    kl_horizon: int = setting(10000, "Adaptive controller horizon in samples.", min=1, group="ppo")
    max_kl: float = setting(50.0, "Stop the run when the mean KL exceeds this bound.", min=0.0, group="ppo")
    gamma: float = setting(1.0, "Discount factor for GAE.", min=0.0, max=1.0, group="ppo")
    lam: float = setting(0.95, "Lambda for GAE.", min=0.0, max=1.0, group="ppo")
    whiten_advantages: bool = setting(True, "Normalise advantages to zero mean and unit variance.", group="ppo")
    cliprange: float = setting(0.2, "Clip range of the policy ratio.", min=0.0, max=10.0, group="ppo")
    cliprange_value: float = setting(0.2, "Clip range of the value update.", min=0.0, group="ppo")
    value_model: str = setting(
        "shared", "The critic. `shared`: a linear value head on the policy's own hidden states (no second pass of "
        "the model; the value loss trains the head alone, so it never bends the policy). `separate`: its own LoRA "
        "adapter and head, one more forward and backward pass per update.", choices=["shared", "separate"],
        group="ppo",
    )
    vf_coef: float = setting(0.1, "Weight of the value loss.", min=0.0, group="ppo")
    ppo_epochs: int = setting(2, "Passes over each batch of rollouts.", min=1, max=64, group="ppo")
    num_minibatches: int = setting(1, "Minibatches per PPO epoch.", min=1, group="ppo")
    max_grad_norm: float = setting(1.0, "Gradient clipping norm.", min=0.0, group="ppo")
    packing: bool = setting(True, PACKING + " In PPO: every pass after sampling.")
    sample_every: int = setting(2, "Write a few (prompt, response, score) samples every N steps.", min=1)

    def validate(self):
        if not self.prompts_file:
            raise ConfigError("`prompts_file` is empty. Fix: set `prompts_file`, e.g. "
                              "`--set prompts_file=sample_data/prompts_train.jsonl`.")
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


GRPO_REWARDS = ("answer", "regex", "length", "judge")


@dataclass
class GRPOConfig(TrainingConfig):
    """GRPO: the model samples a group of answers per prompt and learns from how each scored against the group,
    the score coming from a checkable rule or the judge; no value model."""

    stage: typing.ClassVar[str] = "grpo"

    sft_run: str = setting("", STARTING_SFT_RUN, group="model")
    prompts_file: str = setting("", "Prompts, with a reference `answer` field for the `answer` reward; a file, a "
                                "folder, or a Hub dataset `owner/name[:config][:split]`.", group="data")
    rewards: list[str] = setting(
        ["answer"], "What scores each sampled answer (summed when several): `answer` (1 when the prompt's reference "
        "answer appears in it, numbers and case normalised), `regex` (1 when `reward_regex` matches), `length` (1 "
        "when at most `max_words` words), `judge` (the reward run's score).", group="reward",
    )
    reward_regex: str = setting("", "The pattern of the `regex` reward (Python syntax, searched anywhere in the "
                                "answer).", group="reward")
    max_words: int = setting(20, "The bound of the `length` reward, in words.", min=1, group="reward")
    reward_run: str = setting("", "The judge of the `judge` reward: a reward run folder or `latest`.",
                              group="reward")
    allow_untrusted_judge: bool = setting(
        False, "Use a judge whose held-out accuracy is below its gate. Only for deliberate experiments.",
        group="reward",
    )
    num_generations: int = setting(
        4, "Answers sampled per prompt (the group): each is scored against its group's mean, so a group whose "
        "answers all score alike teaches nothing. `batch_size` counts prompts.", min=2, max=256, group="grpo",
    )
    beta: float = setting(0.04, "Weight of the KL penalty that keeps the model near the reference (0: no reference "
                          "pass at all, faster, nothing holds it back).", min=0.0, max=10.0, group="grpo")
    max_new_tokens: int = setting(40, "Longest sampled answer in tokens.", min=1, max=4096, group="generation")
    temperature: float = setting(1.0, "Sampling temperature: the group needs answers that differ.", min=0.01,
                                 max=5.0, group="generation")
    top_p: float = setting(1.0, "Nucleus sampling threshold.", min=0.01, max=1.0, group="generation")
    sample_every: int = setting(2, "Write a few (prompt, answer, reward) samples every N steps.", min=1)

    def validate(self):
        if not self.prompts_file:
            raise ConfigError("`prompts_file` is empty. Fix: set `prompts_file`, e.g. "
                              "`--set prompts_file=sample_data/verifiable/prompts_train.jsonl`.")
        unknown = [r for r in self.rewards if r not in GRPO_REWARDS]
        if unknown or not self.rewards:
            problem = f"`{unknown[0]}` is not a reward" if unknown else "it is empty"
            raise ConfigError(f"`rewards` is {self.rewards}: {problem}. Fix: choose from {list(GRPO_REWARDS)}, e.g. "
                              "`rewards: [answer]`.")
        if "regex" in self.rewards:
            from pipelines.rules import check_regex

            problem = check_regex(self.reward_regex) if self.reward_regex else "it is empty"
            if problem:
                raise ConfigError(f"`reward_regex` is not a usable pattern ({problem}) but `rewards` has `regex`. "
                                  "Fix: set `reward_regex`, e.g. `--set reward_regex='^[0-9]+$'`.")
        if "judge" in self.rewards and not self.reward_run:
            raise ConfigError("`rewards` has `judge` but `reward_run` is empty. Fix: set `reward_run` to a reward "
                              "run folder or `latest`.")


@dataclass
class CompareConfig(StageConfig):
    """Side by side: base, SFT, PPO, DPO and GRPO responses to held-out prompts, each scored by the judge."""

    stage: typing.ClassVar[str] = "compare"

    sft_run: str = setting("latest", "SFT run folder or `latest` (empty: leave SFT out).", group="model")
    ppo_run: str = setting("latest", "PPO run folder or `latest` (empty: leave PPO out). Several, comma-separated, "
                           "are compared as ppo, ppo_2, ...", group="model")
    dpo_run: str = setting("", "DPO run folder(s) or `latest` (empty: leave DPO out).", group="model")
    grpo_run: str = setting("", "GRPO run folder(s) or `latest` (empty: leave GRPO out).", group="model")
    reward_run: str = setting("latest", "The judge: a reward run folder or `latest`.", group="model")
    prompts_file: str = setting("", "Held-out prompts: a file, a folder, or a Hub dataset "
                                "`owner/name[:config][:split]`.", group="data")
    num_prompts: int = setting(40, "How many prompts to compare.", min=1)
    max_new_tokens: int = setting(48, "Longest response in tokens.", min=1, max=4096, group="generation")
    temperature: float = setting(0.7, "Sampling temperature (0: greedy).", min=0.0, max=5.0, group="generation")
    top_p: float = setting(1.0, "Nucleus sampling threshold.", min=0.01, max=1.0, group="generation")

    # The aligned models' fields take several runs each (comma-separated); each gets its model key in compare_models.
    several_runs: typing.ClassVar[tuple[str, ...]] = ("ppo_run", "dpo_run", "grpo_run")

    def validate(self):
        if not self.prompts_file:
            raise ConfigError("`prompts_file` is empty. Fix: set `prompts_file`, e.g. "
                              "`--set prompts_file=sample_data/prompts_eval.jsonl`.")

    def compare_models(self) -> dict[str, str]:
        """{model key: run folder} of every adapter compared: the stage's name, with `_2`, `_3`... for the second and
        later runs of one stage (compare_summary.json's keys: `win_rate_ppo_2_vs_ppo`)."""
        models = {"sft": self.sft_run} if self.sft_run else {}
        for field_name in self.several_runs:
            stage = field_name.removesuffix("_run")
            folders = [f.strip() for f in getattr(self, field_name).split(",") if f.strip()]
            models.update({stage if i == 0 else f"{stage}_{i + 1}": folder for i, folder in enumerate(folders)})
        return models


# The fields that name another stage's run, and that stage: the CLI resolves them (`latest`), the demo wires them,
# the forms offer that stage's finished runs.
RUN_FIELDS = {"sft_run": "sft", "reward_run": "reward", "ppo_run": "ppo", "dpo_run": "dpo", "grpo_run": "grpo"}

STAGES: dict[str, type[StageConfig]] = {c.stage: c for c in (SFTConfig, RewardConfig, PPOConfig, DPOConfig,
                                                              GRPOConfig, CompareConfig)}
TRAINING_STAGES = tuple(name for name, cls in STAGES.items() if issubclass(cls, TrainingConfig))


def describe_fields(cls: type[StageConfig]) -> list[dict[str, Any]]:
    """Field name, default, type and metadata, for `--help` and the UI's forms."""
    rows = []
    for f in dataclasses.fields(cls):
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        rows.append({"name": f.name, "default": default, "type": type(default).__name__, **f.metadata})
    return rows
