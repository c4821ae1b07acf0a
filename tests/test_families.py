"""The model matrix: every family the workbench claims to run, as a tiny random model built offline from its
transformers config class (hidden 64, 2 layers) with the default model's tokenizer.

What it proves, family by family:
  * the pipeline's exactness devices give the plain computation's numbers, in float32, bfloat16 and 4-bit:
    PPO's policy and reference log-probs (decoder + `logits_from_hidden` on the real tokens only, merged weights
    where the workbench merges) equal log_softmax of the whole causal LM's own forward; for the families that
    transform their logits after the LM head (Gemma 2/3's final soft-capping, Granite's logits scaling) the LM head
    alone would NOT give them, so the comparison can tell a missing transform;
  * packed rows and the prefix tree give the padded pass's hidden states where they are on; where a device is off
    (the prefix tree under a sliding window shorter than its row: every family here but Llama and Granite, with a
    window of 4 tokens and sequences of 36-55) it is off for a reason the test shows (the tree's pass would give
    other numbers) and the fallback still gives the padded pass's numbers; the Trainer-pass wrapper
    (`padding_free_passes`) gives the model's own logits;
  * greedy sampling on merged weights gives `generate`'s tokens;
  * LoRA targets follow the family's own names (Phi-3's fused `qkv_proj`), and Llama names it lacks are refused;
  * every stage (SFT, reward, PPO, DPO, GRPO, compare) completes through the CLI, and the training summaries say
    which modules were adapted and how many parameters trained.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
import torch

from pipelines.data.formats import encode_prompt
from pipelines.model import packing
from pipelines.model.packing import packed_hidden, padded_hidden, padding_free_hidden, padding_free_passes, tree_hidden
from pipelines.model.sampling import end_of_turn_ids, generate, left_pad
from pipelines.runtime.runs import Run
from pipelines.stages.ppo.config import PPOConfig
from pipelines.stages.ppo.core import logprobs_of
from pipelines.stages.ppo.roles import SharedRoles
from tests.conftest import SAMPLE, cli, read_json

ATTENTION = ["k_proj", "o_proj", "q_proj", "v_proj"]
SMALL_CAP = 0.3  # final_logit_softcapping: the tiny models' raw logits reach ~0.8, so the cap bends them visibly


@dataclass
class Family:
    config: str  # the transformers config class
    extra: dict  # its own settings, beside the shared tiny sizes
    transforms_logits: bool = False  # the forward changes the logits after the LM head
    prefix_tree: bool = False  # the prefix-tree pass is on (no sliding window shorter than its row)
    lora_modules: list = field(default_factory=lambda: ATTENTION)  # what the default LoRA targets adapt
    score_class: bool = True  # transformers has a sequence-classification class (else: the generic head)


FAMILIES = {
    "llama": Family("LlamaConfig", dict(head_dim=16, tie_word_embeddings=True), prefix_tree=True),
    "qwen2": Family("Qwen2Config", dict(use_sliding_window=True, sliding_window=4, max_window_layers=0,
                                        tie_word_embeddings=False)),  # q/k/v biases, an untied head
    "qwen3": Family("Qwen3Config", dict(head_dim=16, use_sliding_window=True, sliding_window=4,
                                        layer_types=["sliding_attention", "full_attention"])),  # QK-norm
    "gemma2": Family("Gemma2Config", dict(head_dim=16, query_pre_attn_scalar=16, sliding_window=4,
                                          final_logit_softcapping=SMALL_CAP, attn_logit_softcapping=50.0),
                     transforms_logits=True),  # eager attention
    # Gemma 2 again with its real 4,096-token window, which a shared row cannot outrun: the prefix tree is on, and
    # its mask must reach an eager attention (Gemma 2 has no other) as an additive one
    "gemma2_window": Family("Gemma2Config", dict(head_dim=16, query_pre_attn_scalar=16,
                                                 final_logit_softcapping=SMALL_CAP), transforms_logits=True,
                            prefix_tree=True),
    "gemma3": Family("Gemma3TextConfig", dict(head_dim=16, query_pre_attn_scalar=16, sliding_window=4,
                                              layer_types=["sliding_attention", "full_attention"],
                                              final_logit_softcapping=SMALL_CAP), transforms_logits=True),
    "mistral": Family("MistralConfig", dict(head_dim=16, sliding_window=4)),
    "phi3": Family("Phi3Config", dict(sliding_window=4), lora_modules=["o_proj", "qkv_proj"]),  # fused qkv, gate_up
    "smollm3": Family("SmolLM3Config", dict(use_sliding_window=True, sliding_window=4, no_rope_layers=[1, 0])),
    "granite": Family("GraniteConfig", dict(logits_scaling=8.0), transforms_logits=True, prefix_tree=True,
                      score_class=False),
}
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}
# Log-prob tolerances, chosen from the data. Measured on `batch` over the families: float32 <= 1.2e-5 (merged
# weights), bfloat16 <= 3e-3 (<= 1e-2 on batches of random tokens), 4-bit (float32 compute on a CPU) <= 1e-6. A
# forgotten soft-cap or scaling moves them by >= 0.18, in each precision: far beyond each tolerance.
LOGPROB_TOL = {torch.float32: 1e-4, torch.bfloat16: 2e-2, "4bit": 1e-3}
TEMPERATURE = 0.7


# ---- fixtures ----------------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def tokenizer(default_tokenizer_dir):
    from pipelines.model.loading import load_tokenizer

    return load_tokenizer(str(default_tokenizer_dir))  # pad fixed: <|endoftext|>, not the end of turn


@pytest.fixture(scope="session")
def family_dir(tokenizer, tmp_path_factory):
    """name -> the folder of that family's tiny random model (built once per session, seed 0)."""
    import transformers
    from transformers import AutoModelForCausalLM

    built = {}

    def build(name: str):
        if name not in built:
            family = FAMILIES[name]
            config = getattr(transformers, family.config)(
                vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                pad_token_id=tokenizer.pad_token_id, **family.extra)
            torch.manual_seed(0)
            model = AutoModelForCausalLM.from_config(config)
            path = tmp_path_factory.mktemp(f"tiny-{name}")
            model.save_pretrained(path)
            tokenizer.save_pretrained(path)
            built[name] = path
        return built[name]

    return build


@pytest.fixture(scope="module")
def prompts(tokenizer):
    """Four chat prompts, left-padded (31-43 tokens; the template's system turn is a start they all share)."""
    texts = ["Answer.", "What is 2 + 2?", "Name a colour, please, and say why you like it.", "Hi"]
    return left_pad([encode_prompt(tokenizer, [{"role": "user", "content": t}]) for t in texts],
                    tokenizer.pad_token_id, "cpu")


@pytest.fixture(scope="module")
def batch(prompts, tokenizer):
    """A PPO batch: the prompts, then right-padded random responses of 5-12 tokens (all longer than the sliding
    window of 4). Returns ids, mask and the prompts' width."""
    prompt_ids, prompt_mask = prompts
    gen = torch.Generator().manual_seed(0)
    lengths = [5, 12, 8, 6]
    responses = torch.full((len(lengths), max(lengths)), tokenizer.pad_token_id)
    response_mask = torch.zeros_like(responses)
    for i, n in enumerate(lengths):
        responses[i, :n] = torch.randint(3, 40000, (n,), generator=gen)
        response_mask[i, :n] = 1
    return (torch.cat([prompt_ids, responses], 1), torch.cat([prompt_mask, response_mask], 1),
            prompt_ids.shape[1])


def shared_roles(folder, dtype=torch.float32, quantization: str = "none") -> SharedRoles:
    """PPO's roles on the family's base, with a policy adapter that really changes the numbers (random LoRA A and
    B), the base cast to `dtype` (4-bit: quantized at load, LoRA in float32)."""
    cfg = PPOConfig(prompts_file="unused", reward_run="unused", lora_r=4, quantization=quantization)
    roles = SharedRoles(cfg, str(folder), "cpu", None, None)
    with torch.no_grad():
        for name, param in roles.model.named_parameters():
            if ".policy." in name:
                param.normal_(0, 0.3, generator=torch.Generator().manual_seed(len(name)))
    if quantization == "none":
        roles.model.to(dtype)  # the value head stays float32: it reads the hidden states cast to float32
    return roles


def plain_logprobs(model, ids, mask, width):
    """The plain computation: the whole causal LM's own forward on the padded batch, log_softmax at temperature."""
    positions = (mask.cumsum(1) - 1).clamp(min=0)
    logits = model(input_ids=ids, attention_mask=mask, position_ids=positions).logits
    return logprobs_of(logits[:, width - 1:-1].float() / TEMPERATURE, ids[:, width:])


def head_only_logprobs(roles, ids, mask, width):
    """What the log-probs would be with the LM head alone, the family's transform after it forgotten."""
    head = roles.model.get_base_model().get_output_embeddings()
    hidden = padded_hidden(roles.decoder, ids, mask)[:, width - 1:-1]
    return logprobs_of(head(hidden).float() / TEMPERATURE, ids[:, width:])


def max_gap(a, b, where):
    return float((a.float() - b.float())[where].abs().max())


def relative_gap(a, b, where):
    a, b = a.float()[where], b.float()[where]
    return float((a - b).norm() / b.norm())


def assert_same_hidden(got, want, where, dtype, what):
    """float32: equal up to rounding, element by element; bfloat16: within 1% of the norm (its rounding is about
    0.4% per element; a pass that mixes sequences or ignores a window is off by tens of percent)."""
    if dtype == torch.float32:
        assert max_gap(got, want, where) < 1e-4, what
    else:
        assert relative_gap(got, want, where) < 1e-2, what


def check_logprobs(roles, family, ids, mask, width, tol):
    """(a) the policy's log-probs, unmerged and (where the workbench merges) merged, and (b) the reference's (the
    bare base), against the plain forward; and whether the LM head alone would have given other numbers."""
    real = mask[:, width:].bool()
    with torch.no_grad():
        with roles.use(["policy"]):
            policy = roles.response_logprobs(ids, mask, width, TEMPERATURE)[0]
            want = plain_logprobs(roles.model, ids, mask, width)
            head_only = head_only_logprobs(roles, ids, mask, width)
        with roles.frozen(["policy"]):  # sampling's context: merged weights in float32
            merged = roles.response_logprobs(ids, mask, width, TEMPERATURE)[0]
        with roles.frozen(roles.reference):
            reference = roles.response_logprobs(ids, mask, width, TEMPERATURE)[0]
        with roles.model.disable_adapter():
            want_reference = plain_logprobs(roles.model, ids, mask, width)
    assert roles.reference == []  # no SFT run: the reference is the bare base
    assert max_gap(policy, want, real) < tol
    assert max_gap(merged, want, real) < tol
    assert max_gap(reference, want_reference, real) < tol
    assert policy[~real].abs().max() == 0 and reference[~real].abs().max() == 0  # zeros on padding
    assert max_gap(want, want_reference, real) > 2 * tol  # the policy adapter matters: (a) and (b) differ
    transform_gap = max_gap(head_only, want, real)
    if family.transforms_logits:  # the comparison can see a forgotten soft-cap or scaling
        assert transform_gap > 5 * tol, transform_gap
    else:  # and the table is right that the others have none
        assert transform_gap < tol, transform_gap


# ---- 1. exactness devices, family x precision ----------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES.values(), ids=DTYPES.keys())
@pytest.mark.parametrize("name", FAMILIES)
def test_policy_and_reference_logprobs_are_the_plain_forwards(name, dtype, family_dir, batch):
    ids, mask, width = batch
    roles = shared_roles(family_dir(name), dtype)
    assert roles.model.get_base_model().dtype == dtype
    check_logprobs(roles, FAMILIES[name], ids, mask, width, LOGPROB_TOL[dtype])


@pytest.mark.parametrize("dtype", DTYPES.values(), ids=DTYPES.keys())
@pytest.mark.parametrize("name", FAMILIES)
def test_padding_free_passes_are_the_padded_pass(name, dtype, family_dir, batch, monkeypatch):
    """Packed rows everywhere; the prefix tree only without a short sliding window, and where it is off, the
    reason is real (its pass would see past the window) and PPO's pass falls back to packed rows."""
    family = FAMILIES[name]
    ids, mask, _ = batch
    real = mask.bool()
    roles = shared_roles(family_dir(name), dtype)
    assert roles.packing is True
    assert roles.share_prefix is family.prefix_tree
    assert packing.window_shorter_than_a_row(roles.decoder.config) is not family.prefix_tree
    calls = []
    monkeypatch.setattr(packing, "tree_hidden", lambda *a: calls.append("tree") or tree_hidden(*a))
    monkeypatch.setattr(packing, "packed_hidden", lambda *a: calls.append("packed") or packed_hidden(*a))
    with torch.no_grad(), roles.use(["policy"]):
        want = padded_hidden(roles.decoder, ids, mask)
        used = roles.hidden(ids, mask)
        assert calls == (["tree"] if family.prefix_tree else ["packed"])  # the device PPO uses did run
        assert_same_hidden(used, want, real, dtype, "SharedRoles.hidden")
        assert_same_hidden(packed_hidden(roles.decoder, ids, mask), want, real, dtype, "packed rows")
        tree = padding_free_hidden(roles.decoder, ids, mask, share_prefix=True)
        if family.prefix_tree:
            assert_same_hidden(tree, want, real, dtype, "prefix tree")
        else:  # the tree's one row would let tokens see past the window: off for a reason
            assert relative_gap(tree, want, real) > 0.1


@pytest.mark.parametrize("dtype", DTYPES.values(), ids=DTYPES.keys())
@pytest.mark.parametrize("name", FAMILIES)
def test_trainer_passes_made_padding_free_keep_the_logits(name, dtype, family_dir, batch, monkeypatch):
    """What TRL's trainers call: the causal LM on a right-padded batch without a cache."""
    from transformers import AutoModelForCausalLM

    family = FAMILIES[name]
    ids, mask, _ = batch
    right_ids, right_mask = torch.zeros_like(ids), torch.zeros_like(mask)  # the same sequences, right-padded
    for i in range(len(ids)):
        sequence = ids[i][mask[i].bool()]
        right_ids[i, :len(sequence)], right_mask[i, :len(sequence)] = sequence, 1
    plain, patched = (AutoModelForCausalLM.from_pretrained(family_dir(name), dtype=dtype).eval() for _ in range(2))
    how = padding_free_passes(patched, "cpu")
    assert how == ("real tokens only, shared starts computed once" if family.prefix_tree else
                   "real tokens only, in packed rows")
    calls = []
    monkeypatch.setattr(packing, "tree_hidden", lambda *a: calls.append("tree") or tree_hidden(*a))
    monkeypatch.setattr(packing, "packed_hidden", lambda *a: calls.append("packed") or packed_hidden(*a))
    with torch.no_grad():
        want = plain(input_ids=right_ids, attention_mask=right_mask, use_cache=False).logits
        got = patched(input_ids=right_ids, attention_mask=right_mask, use_cache=False).logits
    assert calls == (["tree"] if family.prefix_tree else ["packed"])
    assert_same_hidden(got, want, right_mask.bool(), dtype, "logits")


@pytest.mark.parametrize("dtype", DTYPES.values(), ids=DTYPES.keys())
@pytest.mark.parametrize("name", FAMILIES)
def test_greedy_sampling_is_generates(name, dtype, family_dir, prompts, tokenizer):
    """Our decode loop on merged weights (float32; bfloat16 keeps the adapter unmerged) against transformers'
    generate with the policy adapter active: the same tokens."""
    prompt_ids, prompt_mask = prompts
    roles = shared_roles(family_dir(name), dtype)
    eos = end_of_turn_ids(tokenizer)
    kwargs = dict(max_new_tokens=8, temperature=0.0, top_p=1.0, eos_ids=eos)
    ours = generate(roles, ["policy"], prompt_ids, prompt_mask, tokenizer, **kwargs)
    with torch.no_grad(), roles.use(["policy"]):
        theirs = roles.model.generate(input_ids=prompt_ids, attention_mask=prompt_mask, max_new_tokens=8,
                                      do_sample=False, eos_token_id=eos, pad_token_id=tokenizer.pad_token_id)
    bare = generate(roles, [], prompt_ids, prompt_mask, tokenizer, **kwargs)
    assert ours.shape == (4, 8)  # a random model never ends its turn: 8 tokens, past the window of 4
    assert torch.equal(ours, theirs[:, prompt_ids.shape[1]:])
    assert not torch.equal(ours, bare)  # the adapter changed the answers: the comparison covers it


# 4-bit: bitsandbytes on the CPU takes 2-6 s a family here, so every family runs.
@pytest.mark.parametrize("name", FAMILIES)
def test_4bit_policy_and_reference_logprobs_are_the_plain_forwards(name, family_dir, batch):
    import bitsandbytes as bnb

    ids, mask, width = batch
    roles = shared_roles(family_dir(name), quantization="4bit")
    assert roles.quantized and any(isinstance(m, bnb.nn.Linear4bit) for m in roles.model.modules())
    check_logprobs(roles, FAMILIES[name], ids, mask, width, LOGPROB_TOL["4bit"])


# ---- 2. LoRA targets ---------------------------------------------------------------------------------------------


def test_phi3s_default_lora_targets_cover_its_fused_projection(family_dir):
    from peft.tuners.lora import LoraLayer

    roles = shared_roles(family_dir("phi3"))
    adapted = {name.rsplit(".", 1)[-1] for name, module in roles.model.named_modules()
               if isinstance(module, LoraLayer) and "policy" in module.lora_A}
    assert adapted == {"qkv_proj", "o_proj"}


def test_llama_names_phi3_lacks_are_refused(family_dir):
    from pipelines.errors import ConfigError

    cfg = PPOConfig(prompts_file="unused", reward_run="unused", lora_r=4, lora_target_modules=["q_proj", "v_proj"])
    with pytest.raises(ConfigError) as error:
        SharedRoles(cfg, str(family_dir("phi3")), "cpu", None, None)
    assert "`q_proj`" in str(error.value) and "qkv_proj" in str(error.value)


# ---- 3. every stage through the CLI --------------------------------------------------------------------------------


def expected_trainable(folder, lora_modules, r):
    """LoRA's parameter count on those modules: r x (inputs + outputs) per adapted linear layer."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(folder)
    return sum(r * (m.in_features + m.out_features) for n, m in model.named_modules()
               if isinstance(m, torch.nn.Linear) and n.rsplit(".", 1)[-1] in lora_modules and ".layers." in n)


def stage(runs, name, *settings):
    args = [x for setting in settings for x in ("--set", setting)]
    rc = cli(name, *args, "--runs-dir", runs)
    run = max(runs.glob(f"*-{name}"), default=None)
    error = read_json(run / "status.json").get("error", "") if run else "no run folder"
    assert rc == 0, f"{name} exited {rc}: {error}"
    return run


@pytest.mark.parametrize("name", FAMILIES)
def test_every_stage_completes(name, family_dir, tmp_path):
    """SFT, then DPO and GRPO from it (no judge needed), then the judge, PPO and the comparison of all five. Granite
    has no sequence-classification class in transformers: its judge is the generic score head on its decoder
    (pipelines.model.loading.score_model_class)."""
    folder, family = family_dir(name), FAMILIES[name]
    runs = tmp_path / "runs"
    sft = stage(runs, "sft", f"model={folder}", f"train_file={SAMPLE / 'sft_train.jsonl'}", "max_steps=2",
                "max_length=96", "learning_rate=0.01")
    dpo = stage(runs, "dpo", f"sft_run={sft}", f"train_file={SAMPLE / 'prefs_train.jsonl'}", "max_steps=2",
                "batch_size=4", "max_length=96")
    grpo = stage(runs, "grpo", f"sft_run={sft}", f"prompts_file={SAMPLE / 'verifiable' / 'prompts_train.jsonl'}",
                 "max_steps=1", "batch_size=2", "max_new_tokens=6")
    reward = stage(runs, "reward", f"model={folder}", f"sft_run={sft}",
                   f"train_file={SAMPLE / 'prefs_train.jsonl'}", f"eval_file={SAMPLE / 'prefs_eval.jsonl'}",
                   "max_steps=3", "batch_size=8", "max_length=96", "accuracy_gate=0")
    ppo = stage(runs, "ppo", f"sft_run={sft}", f"reward_run={reward}",
                f"prompts_file={SAMPLE / 'prompts_train.jsonl'}", "max_new_tokens=6", "batch_size=4", "max_steps=2")
    compare = stage(runs, "compare", f"prompts_file={SAMPLE / 'prompts_eval.jsonl'}", "num_prompts=3",
                    "max_new_tokens=6", "dpo_run=latest", "grpo_run=latest")

    lora = expected_trainable(folder, family.lora_modules, Run(sft).config()["lora_r"])
    for run, steps, trainable in ((sft, 2, lora), (dpo, 2, lora), (grpo, 1, lora), (ppo, 2, lora),
                                  (reward, 3, lora + 64)):  # the judge also trains its score head (64 -> 1)
        summary = read_json(run / "summary.json")
        assert read_json(run / "status.json")["state"] == "completed", run.name
        assert summary["steps"] == steps, run.name
        assert summary["lora_modules"] == family.lora_modules, run.name
        assert summary["trainable_parameters"] == trainable, run.name
    generic = "has no sequence-classification class" in (reward / "run.log").read_text()
    assert generic is not family.score_class
    assert read_json(ppo / "summary.json")["shared_judge"] is True  # float32: the judge rides PPO's base
    compared = read_json(compare / "compare_summary.json")
    assert compared["models"] == ["base", "sft", "ppo", "dpo", "grpo"] and compared["prompts"] == 3
