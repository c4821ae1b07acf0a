"""What every stage's settings share: the base model, LoRA, the training loop, checkpoints. Each stage's own
dataclass derives from these and lives in its package (pipelines/stages/<id>/__init__.py); together they are the
single source of truth for every setting.

Each field's `metadata` carries its help text (shown by `--help`, the UI forms and the docs) and its bounds
or choices, so validation lives in one place: `StageConfig.__post_init__`. YAML recipes and `--set key=value`
use the field names unchanged, in the alignment-handbook style.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib.util
import math
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


DATA_FIELDS = ("train_file", "eval_file", "prompts_file", "probes_file")  # the settings that name data to read
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
    seed: int = setting(42, "Random seed for data order, initialisation and sampling.", min=0, max=2**32 - 1)
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
            if isinstance(value, float) and not math.isfinite(value):
                raise ConfigError(f"`{f.name}` is {value}, which is not a finite number. Fix: set `{f.name}` to a "
                                  "number" + (f" between {meta['min']} and {meta['max']}." if "max" in meta else "."))
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
        from pipelines.data.formats import parse_column_map

        parse_column_map(self.column_map)  # a malformed pair is named here, before any run
        if not self.lora_target_modules:
            raise ConfigError("`lora_target_modules` is empty. Fix: name the modules to adapt, e.g. "
                              "`q_proj, k_proj, v_proj, o_proj`, or `all-linear`.")
        self.validate()

    def validate(self):
        """Checks that involve several fields; stages extend it."""

    def judge_run(self) -> str:
        """The reward run this stage scores with and gates on (empty: none); the demo checks its gate first."""
        return ""

    def require(self, name: str, example: str, what: str = "") -> None:
        """Refuse an empty setting the stage cannot run without, naming it and an example."""
        if not getattr(self, name):
            raise ConfigError(f"`{name}` is empty. Fix: set `{name}`{f' to {what}' if what else ''}, e.g. "
                              f"`--set {name}={example}`.")

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
            try:
                values[key.strip()] = yaml.safe_load(raw) if raw.strip() else ""
            except yaml.YAMLError:
                raise ConfigError(f"`--set {item}`: the value is not valid YAML. Fix: quote it, e.g. "
                                  f"`--set '{key.strip()}=\"{raw}\"'`.") from None
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


# ---- what training stages share ------------------------------------------------------------------------------------


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


@dataclass
class WatchedConfig(TrainingConfig):
    """A stage that trains a policy on answers it samples and scores (PPO, GRPO): it also gets the reward-hacking
    watch's settings (pipelines/runtime/watch.py)."""

    probes_file: str = setting(
        "", "Probe prompts, answered greedily at the start and every `probe_every` steps, scored by the judge and "
        "graded where a line carries a reference `answer` (those are taken first). Empty: `prompts_file`.",
        group="watch",
    )
    probes: int = setting(8, "How many probe prompts (0: no probes).", min=0, max=1000, group="watch")
    probe_every: int = setting(0, "Probe every N steps (0: at each checkpoint).", min=0, group="watch")
    length_alarm: float = setting(
        1.0, "Raise the length alarm when the mean answer length changes by this much, up (1.0: twice as long) or "
        "down by the same factor (half as long); answers that run into `max_new_tokens` raise it too (0: only "
        "those). Compared: the last 5 steps against the first 3, so a run needs 8 steps for it.", min=0.0,
        max=100.0, group="watch",
    )
    stop_on_alarm: bool = setting(False, "End the run, with a checkpoint, at the first alarm (for runs nobody "
                                  "watches).", group="watch")

    resumable_changes: typing.ClassVar[tuple[str, ...]] = (
        *TrainingConfig.resumable_changes, "probe_every", "length_alarm", "stop_on_alarm",
    )

    def probe_due(self, step: int) -> bool:
        """The watch answers its probes at this step: every `probe_every` (0: each checkpoint's), and the last."""
        return step % (self.probe_every or self.checkpoint_every()) == 0 or step == self.max_steps


PACKING = ("Compute only the real tokens of each batch: no padding, and what several sequences start with alike (a "
           "chat template's system turn, the prompt both answers of a pair share) computed once. Same numbers up to "
           "rounding; checked at start, and off by itself for a model that cannot.")
BEFORE_PACKING = {"packing": False}  # a run saved before the setting existed trained on padded batches
MIN_PROMPT_TOKENS = ("When a pair is too long, the prompt is cut from the left down to at least this many tokens "
                     "(both answers stay whole); pairs still too long are dropped. Both are counted in the log and "
                     "the summary.")


STARTING_SFT_RUN = ("Start from an SFT run's model (a run folder, or `latest`); it is also the reference the KL is "
                    "measured against. Empty: the bare base of `model`.")


def describe_fields(cls: type[StageConfig]) -> list[dict[str, Any]]:
    """Field name, default, type and metadata, for `--help` and the UI's forms."""
    rows = []
    for f in dataclasses.fields(cls):
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        rows.append({"name": f.name, "default": default, "type": type(default).__name__, **f.metadata})
    return rows
