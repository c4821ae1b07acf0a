"""Our decode loop computes what `model.generate` computes: the same greedy tokens, the same nucleus, the same
distribution."""

import pytest
import torch

from pipelines.model.sampling import nucleus, pick, sample


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    return AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval(), tokenizer


def left_padded(pad_id: int):
    """Four prompts of 2-7 tokens, left-padded as PPO and Compare pad them."""
    gen = torch.Generator().manual_seed(0)
    lengths = [7, 2, 5, 4]
    ids = torch.full((4, 7), pad_id)
    mask = torch.zeros_like(ids)
    for i, n in enumerate(lengths):
        ids[i, 7 - n:] = torch.randint(3, 400, (n,), generator=gen)
        mask[i, 7 - n:] = 1
    return ids, mask


def hf_greedy(model, ids, mask, max_new_tokens, eos_ids, pad_id):
    out = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=max_new_tokens, do_sample=False,
                         eos_token_id=eos_ids, pad_token_id=pad_id)
    return out[:, ids.shape[1]:]


def test_greedy_tokens_are_generates_tokens_with_rows_ending_at_different_steps(tiny):
    model, tokenizer = tiny
    pad = tokenizer.pad_token_id
    ids, mask = left_padded(pad)
    free = hf_greedy(model, ids, mask, 12, [tokenizer.eos_token_id], pad)
    # an "end of turn" that some rows produce early and others never: rows finish at different steps
    eos = [int(free[0, 3]), int(free[2, 6])]
    expected = hf_greedy(model, ids, mask, 12, eos, pad)
    ours = sample(model, ids, mask, max_new_tokens=12, temperature=0.0, top_p=1.0, eos_ids=eos, pad_id=pad)
    assert torch.equal(ours, expected)
    assert (ours == pad).any()  # a finished row was padded after its end
    # without an early end, every row runs to max_new_tokens
    ours_free = sample(model, ids, mask, max_new_tokens=12, temperature=0.0, top_p=1.0,
                       eos_ids=[tokenizer.eos_token_id], pad_id=pad)
    assert torch.equal(ours_free, free) and ours_free.shape[1] == 12


def test_the_lm_head_runs_on_the_last_position_only(tiny, monkeypatch):
    """Like generate, the prompt pass computes one row of logits per sequence, not one per prompt token."""
    model, tokenizer = tiny
    ids, mask = left_padded(tokenizer.pad_token_id)
    widths = []
    real_forward = model.lm_head.forward
    monkeypatch.setattr(model.lm_head, "forward", lambda x: widths.append(x.shape[1]) or real_forward(x))
    sample(model, ids, mask, max_new_tokens=3, temperature=0.0, top_p=1.0, eos_ids=[0], pad_id=0)
    assert widths == [1, 1, 1]


@pytest.mark.parametrize("top_p", [0.05, 0.5, 0.9, 0.999])
@pytest.mark.parametrize("spread", [1.0, 8.0])  # flat logits reach beyond the first candidates; peaked ones do not
def test_nucleus_keeps_the_tokens_transformers_keeps(top_p, spread):
    from transformers.generation.logits_process import TopPLogitsWarper

    logits = torch.randn(6, 3000, generator=torch.Generator().manual_seed(1)) * spread
    expected = TopPLogitsWarper(top_p)(None, logits.clone())
    ours = nucleus(logits, top_p)
    assert torch.equal(torch.isinf(ours), torch.isinf(expected))
    assert torch.equal(ours[~torch.isinf(ours)], logits[~torch.isinf(expected)])
    assert (~torch.isinf(ours)).sum(-1).min() >= 1


@pytest.mark.parametrize("top_p", [1.0, 0.8])
def test_draws_follow_the_tempered_nucleus_distribution(top_p):
    """40,000 draws per row: every frequency within 0.01 of softmax(nucleus(logits / T)) (the standard error is
    at most 0.0025), and no token outside the nucleus ever drawn."""
    logits = torch.tensor([[2.0, 1.0, 0.5, 0.0, -1.0, -3.0], [0.0, 0.0, 0.1, 3.0, -0.5, 1.0]])
    temperature = 0.7
    expected = torch.softmax(nucleus(logits / temperature, top_p) if top_p < 1 else logits / temperature, -1)
    torch.manual_seed(0)
    draws = torch.stack([pick(logits, temperature, top_p) for _ in range(40_000)])
    for row in range(2):
        freq = torch.bincount(draws[:, row], minlength=6).float() / len(draws)
        assert (freq - expected[row]).abs().max() < 0.01, (row, freq, expected[row])
        assert freq[expected[row] == 0].sum() == 0
    assert torch.equal(pick(logits, 0.0, top_p), logits.argmax(-1))


def test_sampled_responses_pad_after_their_end_and_repeat_with_the_seed(tiny):
    model, tokenizer = tiny
    pad = tokenizer.pad_token_id
    ids, mask = left_padded(pad)
    common = dict(max_new_tokens=16, temperature=1.0, top_p=0.95, pad_id=pad)
    torch.manual_seed(3)
    free = sample(model, ids, mask, eos_ids=[tokenizer.eos_token_id], **common)
    eos = [int(free[1, 2])]
    runs = []
    for _ in range(2):
        torch.manual_seed(3)
        runs.append(sample(model, ids, mask, eos_ids=eos, **common))
    assert torch.equal(runs[0], runs[1])
    out = runs[0]
    for row in out:
        ends = (row == eos[0]).nonzero()
        if len(ends):
            assert (row[int(ends[0]) + 1:] == pad).all()
