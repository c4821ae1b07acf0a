"""Packed passes give the padded passes' numbers: hidden states, gradients, and PPO's logits and values."""

import pytest
import torch

from pipelines.config import PPOConfig
from pipelines.packing import pack, packed_hidden, packing_works, padded_hidden, unpack
from pipelines.ppo import SharedRoles


def ppo_like_batch(seed: int = 0):
    """Left-padded prompts of 3-9 tokens followed by right-padded responses of 1-12 tokens, as a PPO step sees."""
    gen = torch.Generator().manual_seed(seed)
    prompt_lens = torch.randint(3, 10, (8,), generator=gen)
    response_lens = torch.randint(1, 13, (8,), generator=gen)
    width, length = int(prompt_lens.max()), int(response_lens.max())
    ids = torch.randint(1, 500, (8, width + length), generator=gen)
    mask = torch.zeros_like(ids)
    for i, (p, r) in enumerate(zip(prompt_lens.tolist(), response_lens.tolist())):
        mask[i, width - p:width + r] = 1
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


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_packed_pass_equals_the_padded_pass_forward_and_backward(decoder, seed):
    ids, mask, _ = ppo_like_batch(seed)
    weights = torch.randn(*ids.shape, decoder.config.hidden_size, generator=torch.Generator().manual_seed(seed))
    results = []
    for forward in (padded_hidden, packed_hidden):
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


def test_ppo_passes_give_the_plain_numbers(tiny_model_dir):
    """SharedRoles' pass (packed, LM head on real tokens only) against the plain one (padded, LM head everywhere):
    the same log-probs, values and entropy on every real response token, and zeros on padding."""
    from tests.test_ppo import full_pass

    cfg = PPOConfig(prompts_file="unused", reward_run="unused", lora_r=4)
    roles = SharedRoles(cfg, str(tiny_model_dir), "cpu", None, None)
    assert roles.packing
    with torch.no_grad():
        roles.value_head.weight.normal_()
    ids, mask, width = ppo_like_batch(3)
    with torch.no_grad(), roles.use(["policy"]):
        logprobs, values, entropy = roles.response_logprobs(ids, mask, width, 0.7, entropy=True)
        want_logprobs, want_values, want_entropy = full_pass(roles, ids, mask, width, 0.7)
    real = mask[:, width:].bool()
    assert torch.allclose(logprobs[real], want_logprobs[real], atol=1e-5)
    assert torch.allclose(values[real], want_values[real], atol=1e-5)
    assert torch.allclose(entropy[real], want_entropy[real], atol=1e-4)
    assert logprobs[~real].abs().max() == 0 and entropy[~real].abs().max() == 0
