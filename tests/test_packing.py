"""Packed passes give the padded passes' numbers: hidden states, gradients, and PPO's logits and values."""

import pytest
import torch

from pipelines.config import PPOConfig
from pipelines import packing
from pipelines.packing import (pack, packed_hidden, packing_works, padded_hidden, padding_free_hidden,
                               prefix_shared_hidden, prefix_sharing_works, shared_prefix, unpack)
from pipelines.ppo import SharedRoles


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


def test_the_shared_prefix_is_found_and_leaves_each_sequence_a_token():
    ids, mask, _ = ppo_like_batch(0, prefix=10)
    assert shared_prefix(ids, mask) == 10
    assert shared_prefix(*ppo_like_batch(0)[:2]) == 0
    same = torch.tensor([[5, 6, 7], [5, 6, 7]])
    assert shared_prefix(same, torch.ones_like(same)) == 2  # not the whole of a sequence


def prefix_shared(decoder, ids, mask):
    return prefix_shared_hidden(decoder, ids, mask, shared_prefix(ids, mask))


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("forward,prefix", [(packed_hidden, 0), (prefix_shared, 10)], ids=["packed", "prefix"])
def test_packed_pass_equals_the_padded_pass_forward_and_backward(decoder, seed, forward, prefix):
    """Packed rows, and one row with the shared prefix computed once: the padded pass's hidden states and every
    parameter's gradient, up to rounding."""
    ids, mask, _ = ppo_like_batch(seed, prefix)
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


def test_the_prefix_is_shared_only_where_the_batch_has_one(decoder, monkeypatch):
    calls = []
    monkeypatch.setattr(packing, "prefix_shared_hidden", lambda *a: calls.append(a[3]) or prefix_shared_hidden(*a))
    for prefix, shared in ((10, [10]), (4, []), (0, [])):  # below MIN_SHARED_PREFIX: packed rows
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
