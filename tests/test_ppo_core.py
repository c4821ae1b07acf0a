"""PPO arithmetic against values worked out by hand (see the comments for each)."""

import math

import pytest
import torch

from pipelines.stages.ppo.core import (KLController, gae, kl_k1, kl_k3, masked_mean, policy_loss, token_rewards,
                                       value_loss, whiten)

T = torch.tensor


def test_gae_without_padding():
    # gamma=1, lam=0.5, reward 1 at the end, values 0.5 everywhere:
    # t=2: delta = 1 - 0.5 = 0.5 -> A2 = 0.5; t=1: delta = 0 + 0.5 - 0.5 = 0 -> A1 = 0.5 * 0.5 = 0.25; A0 = 0.125.
    adv, ret = gae(T([[0.0, 0.0, 1.0]]), T([[0.5, 0.5, 0.5]]), T([[1.0, 1.0, 1.0]]), gamma=1.0, lam=0.5)
    assert torch.allclose(adv, T([[0.125, 0.25, 0.5]]))
    assert torch.allclose(ret, T([[0.625, 0.75, 1.0]]))


def test_gae_ignores_padding_after_the_response():
    # The value 9 sits on padding and must not leak in. t=1: delta = 1 + 0 - 0.4 = 0.6; t=0: 0.2 + 0.6 = 0.8.
    adv, ret = gae(T([[0.0, 1.0, 0.0]]), T([[0.2, 0.4, 9.0]]), T([[1.0, 1.0, 0.0]]), gamma=1.0, lam=1.0)
    assert torch.allclose(adv, T([[0.8, 0.6, 0.0]]))
    assert torch.allclose(ret, T([[1.0, 1.0, 0.0]]))


def test_gae_discount():
    # gamma=0.5, lam=1, values 0: A = discounted return: [0.25, 0.5, 1].
    adv, _ = gae(T([[0.0, 0.0, 1.0]]), T([[0.0, 0.0, 0.0]]), T([[1.0, 1.0, 1.0]]), gamma=0.5, lam=1.0)
    assert torch.allclose(adv, T([[0.25, 0.5, 1.0]]))


def test_whiten_uses_only_masked_entries():
    # [1, 2, 3] has mean 2 and unbiased variance 1 -> [-1, 0, 1]; the masked 100 is ignored and stays 0.
    out = whiten(T([[1.0, 2.0, 3.0, 100.0]]), T([[1.0, 1.0, 1.0, 0.0]]))
    assert torch.allclose(out, T([[-1.0, 0.0, 1.0, 0.0]]), atol=1e-4)
    kept = whiten(T([[1.0, 2.0, 3.0]]), T([[1.0, 1.0, 1.0]]), shift_mean=False)
    assert torch.allclose(kept, T([[1.0, 2.0, 3.0]]), atol=1e-4)


def test_kl_estimators():
    # p = 0.5, ref = 0.25: k1 = log 2 = 0.6931; k3 = (0.5 - 1) - log 0.5 = 0.1931.
    logp, ref = T([math.log(0.5)]), T([math.log(0.25)])
    assert kl_k1(logp, ref).item() == pytest.approx(math.log(2), abs=1e-6)
    assert kl_k3(logp, ref).item() == pytest.approx(-0.5 + math.log(2), abs=1e-6)
    assert kl_k1(logp, logp).item() == 0 and kl_k3(logp, logp).item() == 0
    assert kl_k3(ref, logp).item() > 0  # k3 is never negative, whichever way round


def test_token_rewards_put_the_score_on_the_last_real_token():
    # coef 0.5, KL [0.1, 0.2, (pad)], score 2: [-0.05, -0.1 + 2, 0].
    rewards = token_rewards(T([2.0]), T([[0.1, 0.2, 0.3]]), T([[1.0, 1.0, 0.0]]), kl_coef=0.5)
    assert torch.allclose(rewards, T([[-0.05, 1.9, 0.0]]))


def test_clipped_policy_loss():
    # ratio 1.5, clip 0.2. Advantage +1: max(-1.5, -1.2) = -1.2 (clipped). Advantage -1: max(1.5, 1.2) = 1.5.
    old = T([[0.0, 0.0]])
    new = old + math.log(1.5)
    loss, stats = policy_loss(new, old, T([[1.0, -1.0]]), T([[1.0, 1.0]]), cliprange=0.2)
    assert loss.item() == pytest.approx((-1.2 + 1.5) / 2)
    assert stats["policy/clipfrac"] == pytest.approx(0.5)
    assert stats["val/ratio"] == pytest.approx(1.5)
    assert stats["policy/approxkl"] == pytest.approx(0.5 * math.log(1.5) ** 2)


def test_policy_loss_gradient_vanishes_where_clipped():
    new = T([[math.log(1.5)]], requires_grad=True)
    loss, _ = policy_loss(new, T([[0.0]]), T([[1.0]]), T([[1.0]]), cliprange=0.2)
    loss.backward()
    assert new.grad.item() == 0.0


def test_clipped_value_loss():
    # value moved 0 -> 1, return 1, clip 0.2: unclipped error 0, clipped value 0.2 -> (0.8)^2; loss 0.5 * 0.64.
    loss, stats = value_loss(T([[1.0]]), T([[0.0]]), T([[1.0]]), T([[1.0]]), cliprange_value=0.2)
    assert loss.item() == pytest.approx(0.32)
    # inside the clip range both agree: value 0.1, old 0, return 1 -> 0.5 * 0.81.
    loss, _ = value_loss(T([[0.1]]), T([[0.0]]), T([[1.0]]), T([[1.0]]), cliprange_value=0.2)
    assert loss.item() == pytest.approx(0.405)


def test_masked_mean():
    assert masked_mean(T([[1.0, 3.0, 100.0]]), T([[1.0, 1.0, 0.0]])).item() == 2.0


def test_kl_controller():
    fixed = KLController(0.1)
    fixed.update(100.0, 8)
    assert fixed.value == 0.1
    adaptive = KLController(0.1, adaptive=True, target=6.0, horizon=100)
    adaptive.update(12.0, 10)  # error clipped to +0.2 -> x(1 + 0.2 * 10 / 100)
    assert adaptive.value == pytest.approx(0.102)
    adaptive.update(3.0, 10)  # error -0.5 clipped to -0.2
    assert adaptive.value == pytest.approx(0.102 * 0.98)


def test_minibatches_partition_the_batch():
    from pipelines.stages.ppo.core import minibatches

    torch.manual_seed(0)
    parts = minibatches(12, 3)
    assert [len(p) for p in parts] == [4, 4, 4]
    assert sorted(torch.cat(parts).tolist()) == list(range(12))
    assert minibatches(5, 1)[0].tolist() == [0, 1, 2, 3, 4]  # one minibatch: the whole batch, no random draw
