"""Packed passes give the padded passes' numbers: hidden states, gradients, and PPO's logits and values."""

import pytest
import torch

from pipelines.model import packing
from pipelines.model.packing import (pack, packed_hidden, packing_works, padded_hidden, padding_free_hidden,
                                     padding_free_passes, prefix_sharing_works, prefix_tree, right_padded, tree_hidden,
                                     unpack)
from pipelines.stages.ppo.config import PPOConfig
from pipelines.stages.ppo.roles import SharedRoles


def ppo_like_batch(seed: int = 0, prefix: int = 0):
    """Left-padded prompts of 3-9 tokens followed by right-padded responses of 1-12 tokens, as a PPO step sees;
    with `prefix`, every prompt starts with the same `prefix` tokens first (as a chat template's system turn)."""
    gen = torch.Generator().manual_seed(seed)
    prompt_lens = torch.randint(3, 10, (8,), generator=gen) + prefix
    response_lens = torch.randint(1, 13, (8,), generator=gen)
    width, length = int(prompt_lens.max()), int(response_lens.max())
    ids = torch.randint(1, 500, (8, width + length), generator=gen)
    mask = torch.zeros_like(ids)
    for i, (p, r) in enumerate(zip(prompt_lens.tolist(), response_lens.tolist())):
        mask[i, width - p:width + r] = 1
        ids[i, width - p:width - p + prefix] = torch.arange(600, 600 + prefix)  # the shared tokens
    return ids * mask, mask, width


@pytest.fixture(scope="module")
def decoder(tiny_model_dir):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval().get_decoder()


@pytest.mark.parametrize("seed", [0, 1])
def test_pack_places_every_real_token_once_in_fewer_rows(seed):
    ids, mask, _ = ppo_like_batch(seed)
    packed = pack(ids, mask)
    lengths = mask.sum(1)
    assert 1 < packed.ids.shape[0] < len(ids) and packed.ids.shape[1] == 2 * lengths.max()
    assert packed.ids.numel() < mask.numel()  # less work than the padded batch
    places = set(zip(packed.row.tolist(), packed.col.tolist()))
    assert len(places) == mask.sum()  # no two tokens in one place
    assert torch.equal(packed.ids[packed.row, packed.col], ids[mask.bool()])
    # each sequence counts its positions from 0, as the padded pass does
    assert torch.equal(packed.position_ids[packed.row, packed.col], (mask.cumsum(1) - 1)[mask.bool()])
    assert torch.equal(unpack(packed, packed.ids[..., None])[..., 0], ids * mask)


def pairs_batch(seed: int = 0):
    """Right-padded preference pairs as the reward and DPO trainers see them: every prompt starts with the same 10
    tokens (a system turn), and each pair's chosen and rejected answer follow the same prompt."""
    gen = torch.Generator().manual_seed(seed)
    system = list(range(600, 610))
    sequences = []
    for _ in range(4):
        prompt = system + torch.randint(1, 500, (int(torch.randint(3, 9, (1,), generator=gen)),), generator=gen).tolist()
        for _ in range(2):
            answer = torch.randint(1, 500, (int(torch.randint(1, 12, (1,), generator=gen)),), generator=gen)
            sequences.append(prompt + answer.tolist())
    order = [0, 2, 4, 6, 1, 3, 5, 7]  # chosen answers first, then the rejected ones, as TRL batches them
    sequences = [sequences[i] for i in order]
    ids = torch.zeros(len(sequences), max(map(len, sequences)), dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, sequence in enumerate(sequences):
        ids[i, :len(sequence)], mask[i, :len(sequence)] = torch.tensor(sequence), 1
    return ids, mask, sequences


def test_the_prefix_tree_holds_each_distinct_start_once():
    ids, mask, sequences = pairs_batch(0)
    tree = prefix_tree(ids, mask)
    distinct = {tuple(s[:n]) for s in sequences for n in range(1, len(s) + 1)}
    assert len(tree.ids) == len(distinct)  # one slot per distinct prefix: the system turn once, each prompt once
    assert torch.equal(tree.ids[tree.place], ids[mask.bool()])
    assert torch.equal(tree.positions[tree.place], (mask.cumsum(1) - 1)[mask.bool()])
    # a token sees exactly the earlier tokens of its own sequence
    first = tree.place[:len(sequences[0])]
    assert torch.equal(tree.visible()[first[-1]].nonzero().flatten().sort().values, first.sort().values)
    assert int(tree.visible().sum()) == sum(len(p) for p in distinct)
    same = torch.tensor([[5, 6, 7], [5, 6, 7]])  # identical sequences take the same slots
    assert len(prefix_tree(same, torch.ones_like(same)).ids) == 3
    ppo_ids, ppo_mask, _ = ppo_like_batch(0, prefix=10)  # left padding: the real tokens are found wherever they are
    assert len(prefix_tree(ppo_ids, ppo_mask).ids) <= int(ppo_mask.sum()) - 7 * 10


def tree_pass(decoder, ids, mask):
    tree = prefix_tree(ids, mask)
    assert len(tree.ids) < int(mask.sum())  # the batch shares something: the pass is on fewer tokens
    return tree_hidden(decoder, ids, mask, tree)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("forward,batch", [(packed_hidden, "ppo"), (tree_pass, "ppo_prefix"), (tree_pass, "pairs")])
def test_packed_pass_equals_the_padded_pass_forward_and_backward(decoder, seed, forward, batch):
    """Packed rows, and one row with what the sequences start with alike computed once: the padded pass's hidden
    states and every parameter's gradient, up to rounding."""
    ids, mask = {"ppo": lambda: ppo_like_batch(seed)[:2], "ppo_prefix": lambda: ppo_like_batch(seed, 10)[:2],
                 "pairs": lambda: pairs_batch(seed)[:2]}[batch]()
    weights = torch.randn(*ids.shape, decoder.config.hidden_size, generator=torch.Generator().manual_seed(seed))
    results = []
    for forward in (padded_hidden, forward):
        decoder.zero_grad()
        hidden = forward(decoder, ids, mask) * mask[..., None]
        (hidden * weights).sum().backward()
        results.append((hidden.detach(), {n: p.grad.clone() for n, p in decoder.named_parameters()}))
    (padded, padded_grads), (packed, packed_grads) = results
    assert torch.allclose(packed, padded, atol=1e-5)
    for name, grad in padded_grads.items():
        assert torch.allclose(packed_grads[name], grad, atol=1e-4, rtol=1e-4), name


def test_a_model_that_lets_packed_sequences_mix_is_detected(decoder):
    assert packing_works(decoder, "cpu")

    def leaky(input_ids, position_ids, attention_mask, use_cache):
        if attention_mask is None:  # packed: positions that never restart, so sequences see each other
            position_ids = torch.arange(input_ids.shape[1]).expand_as(input_ids)
        return decoder(input_ids=input_ids, position_ids=position_ids, attention_mask=attention_mask,
                       use_cache=use_cache)

    assert not packing_works(leaky, "cpu")


def test_the_tree_is_used_only_where_the_batch_shares_enough(decoder, monkeypatch):
    calls = []
    monkeypatch.setattr(packing, "tree_hidden", lambda *a: calls.append(1) or tree_hidden(*a))
    for prefix, shared in ((10, [1]), (4, []), (0, [])):  # below MIN_SHARED_PREFIX a sequence: packed rows
        calls.clear()
        ids, mask, _ = ppo_like_batch(1, prefix)
        hidden = padding_free_hidden(decoder, ids, mask)
        assert calls == shared
        assert torch.allclose(hidden, padded_hidden(decoder, ids, mask) * mask[..., None], atol=1e-5)
    monkeypatch.setattr(packing, "MAX_SHARED_ROW", 20)  # a row that long: packed rows instead
    calls.clear()
    padding_free_hidden(decoder, *ppo_like_batch(1, 10)[:2])
    assert calls == []


def test_a_model_that_ignores_a_custom_mask_is_detected(decoder):
    assert prefix_sharing_works(decoder, "cpu")

    def causal_only(input_ids, position_ids, attention_mask, use_cache):
        if attention_mask is not None and attention_mask.dim() == 4:  # the mask dropped: one causal row
            attention_mask = None
        return decoder(input_ids=input_ids, position_ids=position_ids, attention_mask=attention_mask,
                       use_cache=use_cache)

    assert not prefix_sharing_works(causal_only, "cpu")


@pytest.mark.parametrize("prefix", [0, 10])
def test_ppo_passes_give_the_plain_numbers(tiny_model_dir, prefix):
    """SharedRoles' pass (packed, LM head on real tokens only) against the plain one (padded, LM head everywhere):
    the same log-probs, values and entropy on every real response token, and zeros on padding."""
    from tests.test_ppo import full_pass

    cfg = PPOConfig(prompts_file="unused", reward_run="unused", lora_r=4)
    roles = SharedRoles(cfg, str(tiny_model_dir), "cpu", None, None)
    assert roles.packing and roles.share_prefix
    with torch.no_grad():
        roles.value_head.weight.normal_()
    ids, mask, width = ppo_like_batch(3, prefix)
    with torch.no_grad(), roles.use(["policy"]):
        logprobs, values, entropy = roles.response_logprobs(ids, mask, width, 0.7, entropy=True)
        want_logprobs, want_values, want_entropy = full_pass(roles, ids, mask, width, 0.7)
    real = mask[:, width:].bool()
    assert torch.allclose(logprobs[real], want_logprobs[real], atol=1e-5)
    assert torch.allclose(values[real], want_values[real], atol=1e-5)
    assert torch.allclose(entropy[real], want_entropy[real], atol=1e-4)
    assert logprobs[~real].abs().max() == 0 and entropy[~real].abs().max() == 0


def test_right_padding_is_told_apart():
    assert right_padded(torch.tensor([[1, 1, 1], [1, 1, 0], [1, 0, 0]]))
    assert not right_padded(torch.tensor([[1, 1, 1], [0, 1, 1]]))  # left padding
    assert not right_padded(torch.tensor([[1, 0, 1]]))


@pytest.mark.parametrize("head", ["causal", "score"])
def test_trainer_passes_made_padding_free_give_the_same_outputs_and_gradients(tiny_model_dir, head, monkeypatch):
    """What TRL's trainers call (the model on a right-padded batch, no cache) takes the tree, and gives the padded
    pass's logits and gradients; generation and left-padded calls keep the model's own forward."""
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    def load():
        torch.manual_seed(0)  # the score head is drawn at load time: the same in both
        if head == "causal":
            return AutoModelForCausalLM.from_pretrained(tiny_model_dir)
        model = AutoModelForSequenceClassification.from_pretrained(tiny_model_dir, num_labels=1)
        model.config.pad_token_id = 0
        return model

    plain, patched = load(), load()
    assert padding_free_passes(patched, "cpu") == "real tokens only, shared starts computed once"
    calls = []
    monkeypatch.setattr(packing, "tree_hidden", lambda *a: calls.append(1) or tree_hidden(*a))
    ids, mask, _ = pairs_batch(2)
    results = []
    for model in (plain, patched):
        model.zero_grad()
        logits = model(input_ids=ids, attention_mask=mask, use_cache=False).logits
        if head == "causal":
            logits = logits * mask[..., None]  # the padding's logits are never read
        logits.pow(2).mean().backward()
        results.append((logits.detach(), {n: p.grad for n, p in model.named_parameters() if p.grad is not None}))
    assert calls == [1]
    (want, want_grads), (got, got_grads) = results
    assert torch.allclose(got, want, atol=1e-4)
    assert want_grads.keys() == got_grads.keys()
    for name, grad in want_grads.items():
        assert torch.allclose(got_grads[name], grad, atol=1e-4, rtol=1e-3), name

    calls.clear()
    left = torch.flip(mask, [1])  # left padding: the model's own forward
    patched(input_ids=torch.flip(ids, [1]), attention_mask=left, use_cache=False)
    if head == "causal":
        prompt = ids[:1, :12]
        out = [m.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=5, do_sample=False)
               for m in (plain, patched)]
        assert torch.equal(out[0], out[1])
    assert calls == []


def test_a_model_that_cannot_pack_keeps_its_own_forward(tiny_model_dir, monkeypatch):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    monkeypatch.setattr(packing, "packing_works", lambda *a: False)
    forward = model.model.forward
    assert padding_free_passes(model, "cpu").startswith("padded batches")
    assert model.model.forward == forward


@pytest.mark.parametrize("stage", ["sft", "reward", "dpo"])
def test_a_stage_trains_the_same_with_and_without_padding(stage, tiny_model_dir, tmp_path, monkeypatch):
    """The whole stage through the CLI, packing on and off, dropout off: the same loss at every step, the same
    held-out figures and the same trained adapter, up to rounding; and the log says which passes ran."""
    import json

    from safetensors.torch import load_file

    from tests.conftest import SAMPLE, cli, only_run

    data = {"sft": ["--set", f"train_file={SAMPLE / 'sft_train.jsonl'}", "--set",
                    f"eval_file={SAMPLE / 'sft_eval.jsonl'}"],
            "reward": ["--set", f"train_file={SAMPLE / 'prefs_train.jsonl'}", "--set",
                       f"eval_file={SAMPLE / 'prefs_eval.jsonl'}", "--set", "eval_steps=2"],
            "dpo": ["--set", f"train_file={SAMPLE / 'prefs_train.jsonl'}"]}[stage]
    runs, tree_passes = {}, []
    monkeypatch.setattr(packing, "tree_hidden", lambda *a: tree_passes.append(a[1].shape) or tree_hidden(*a))
    for packs in (False, True):
        folder = tmp_path / str(packs)
        assert cli(stage, "--set", f"model={tiny_model_dir}", *data, "--set", "max_steps=3", "--set", "batch_size=4",
                   "--set", "learning_rate=0.01", "--set", "max_length=96", "--set", "lora_dropout=0", "--set",
                   f"packing={packs}", "--runs-dir", folder) == 0
        runs[packs] = only_run(folder)
        assert bool(tree_passes) == packs  # the trainer's own passes went through the tree, and only with packing
    assert "shared starts computed once" in (runs[True] / "run.log").read_text()
    assert "Training passes" not in (runs[False] / "run.log").read_text()

    def figures(run):
        rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
        return [(r["step"], k, v) for r in rows for k, v in sorted(r.items())
                if isinstance(v, float) and ("loss" in k or "accuracy" in k or "margin" in k) and "runtime" not in k]

    plain, packed = figures(runs[False]), figures(runs[True])
    assert len(plain) >= 3 and [f[:2] for f in plain] == [f[:2] for f in packed]
    for (step, key, want), (_, _, got) in zip(plain, packed):
        assert got == pytest.approx(want, rel=1e-3, abs=1e-4), (step, key)
    want = load_file(runs[False] / "adapter" / "adapter_model.safetensors")
    got = load_file(runs[True] / "adapter" / "adapter_model.safetensors")
    moved = [k for k in want if "lora_B" in k and want[k].abs().sum() > 0]
    assert moved  # it trained
    for name, weight in want.items():
        assert torch.allclose(got[name], weight, atol=1e-4), name


def test_trls_fused_head_scores_only_labelled_positions_on_a_cpu_within_the_patch(tiny_model_dir, monkeypatch):
    """The SFT loss's LM head runs on the positions that carry a label, not on the whole padded batch, and gives
    the same per-token log-probs; only within the patch's block, and only on the TRL it was written for."""
    import trl
    import trl.trainer.utils as trl_utils
    from transformers import AutoModelForCausalLM

    from pipelines.model.patches import fused_head_on_labelled_positions
    from trl.kernels import chunked_logprob

    assert trl_utils._use_triton is chunked_logprob._use_triton  # no stage left it patched
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    trl_utils.add_fused_lm_head(model, outputs=("log_probs", "entropy"))
    ids, mask, _ = pairs_batch(3)
    labels = ids.masked_fill(mask == 0, -100)
    labels[:, :12] = -100  # the prompt: no label
    rows = []
    apply = trl_utils._ChunkedLogProbFunction.apply
    monkeypatch.setattr(trl_utils._ChunkedLogProbFunction, "apply", lambda h, *a: rows.append(len(h)) or apply(h, *a))

    def log_probs():
        return model(input_ids=ids, attention_mask=mask, labels=labels, fused_lm_head=True).log_probs

    everywhere = log_probs()
    with fused_head_on_labelled_positions() as patched:
        assert patched
        labelled = log_probs()
    assert rows == [labels.numel() - len(labels), int((labels[:, 1:] != -100).sum())]
    assert torch.allclose(labelled, everywhere, atol=1e-5)
    assert trl_utils._use_triton is chunked_logprob._use_triton  # restored when the block ends
    monkeypatch.setattr(trl, "__version__", "1.17.0")
    with fused_head_on_labelled_positions() as patched:  # another TRL: its own behaviour
        assert not patched and trl_utils._use_triton is chunked_logprob._use_triton


def test_the_trainers_passes_keep_the_own_forward_where_the_tree_would_not_pay(tiny_model_dir, monkeypatch):
    """A lone sequence, a batch with neither padding nor a shared start, a caller that wants a tuple: the model's own
    pass (a GPU runs a lone causal sequence with its fastest kernel)."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    padding_free_passes(model, "cpu")
    calls = []
    monkeypatch.setattr(packing, "tree_hidden", lambda *a: calls.append("tree") or tree_hidden(*a))
    monkeypatch.setattr(packing, "packed_hidden", lambda *a: calls.append("packed") or packed_hidden(*a))
    ids, mask, _ = pairs_batch(1)
    model(input_ids=ids[:1], attention_mask=mask[:1], use_cache=False)
    distinct = torch.arange(1, 25).reshape(2, 12)  # no padding, nothing in common
    model(input_ids=distinct, attention_mask=torch.ones_like(distinct), use_cache=False)
    out = model.model(input_ids=ids, attention_mask=mask, use_cache=False, return_dict=False)
    assert isinstance(out, tuple) and calls == []
    model(input_ids=ids, attention_mask=mask, use_cache=False)
    assert calls == ["tree"]


def test_a_sliding_window_shorter_than_a_row_keeps_packed_rows(decoder):
    assert prefix_sharing_works(decoder, "cpu")
    decoder.config.sliding_window = 512  # as Gemma 3: the tree's mask would reach past it
    try:
        assert not prefix_sharing_works(decoder, "cpu")
        decoder.config.use_sliding_window = False  # as Qwen2's configs: declared, not used
        assert prefix_sharing_works(decoder, "cpu")
    finally:
        del decoder.config.sliding_window, decoder.config.use_sliding_window
