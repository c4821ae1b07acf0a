"""Padding-free passes: a padded batch's real tokens packed into fewer rows, and the outputs put back in place.

A PPO batch is mostly padding: prompts are left-padded to the longest prompt and responses right-padded to the
longest response, so at the quick recipe about half of every forward and backward pass works on tokens that every
loss then masks out. Packing puts several sequences in one row, each with its own positions from 0; transformers
reads those restarting `position_ids` (with `attention_mask=None` and no cache) as packed sequences and builds the
block-causal mask itself, so no token attends across a sequence boundary. The result equals the padded pass up to
float rounding, and the tests hold the two side by side.

Rows are filled first-fit-decreasing up to twice the longest sequence's length, so the linear layers, most of the
work, see only real tokens and a little slack, while attention, quadratic in a row's length, costs at most about
twice a padded batch's (a row twice as long costs four times as much, and there are about half as many rows).
Measured on the quick recipe's batches (8 x ~40-token prompts + 9-40-token responses, 2-core CPU): a reference
pass 1.63 -> 1.17 s, a policy forward + backward 3.87 -> 2.55 s; a single row of all tokens gained less, its
attention cost eating the saving.

A chat template also starts every prompt with the same tokens (SmolLM2's default system turn is 24 of a prompt's
~39), and each pass computed them once per sequence. When the sequences of a batch share such a prefix, the pass
runs on one row instead: the prefix once, then each sequence's own tokens with positions continuing from it, and a
4D mask that lets a token see the prefix and the earlier tokens of its own sequence only. Each token sees exactly
what it saw in its own sequence, so the numbers are again the padded pass's up to rounding. At the quick recipe
(8 sequences of ~63 tokens, 24 shared) that is 311 tokens instead of 479: measured on a 2-core CPU, a forward 0.76
-> 0.47 s and a forward + backward 1.71 -> 1.02 s against the packed pass.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

MIN_SHARED_PREFIX = 8  # tokens: below this, sharing saves less than the one long row's attention costs
MAX_SHARED_ROW = 1024  # tokens in the one row: its attention grows with the square, the packed rows' far less


@dataclass
class Packed:
    ids: torch.Tensor  # (rows, capacity) token ids; slack at a row's end is token 0
    position_ids: torch.Tensor  # (rows, capacity): each sequence counts from 0; the slack is a segment of its own
    row: torch.Tensor  # (real tokens,) where each real token went, in the order of `mask.bool()` indexing
    col: torch.Tensor
    mask: torch.Tensor  # the padded batch's (batch, width) mask, for unpacking


def pack(ids: torch.Tensor, mask: torch.Tensor) -> Packed:
    """Pack the real tokens (mask == 1) of a padded (batch, width) batch; each row's real tokens must be contiguous
    (left-padded prompt + right-padded response, or plain right padding)."""
    keep = mask.bool()
    lengths = keep.sum(1).tolist()
    capacity = min(2 * max(lengths), sum(lengths))
    rows: list[list[int]] = []
    room: list[int] = []
    for i in sorted(range(len(lengths)), key=lambda i: -lengths[i]):
        for r, free in enumerate(room):
            if lengths[i] <= free:
                rows[r].append(i)
                room[r] -= lengths[i]
                break
        else:
            rows.append([i])
            room.append(capacity - lengths[i])

    packed_ids = torch.zeros((len(rows), capacity), dtype=ids.dtype)
    positions = torch.zeros((len(rows), capacity), dtype=torch.long)
    starts = [0]
    for n in lengths:
        starts.append(starts[-1] + n)
    row = torch.empty(starts[-1], dtype=torch.long)
    col = torch.empty(starts[-1], dtype=torch.long)
    tokens = ids[keep].cpu()  # row-major: sequence 0's tokens, then sequence 1's...
    for r, members in enumerate(rows):
        at = 0
        for i in members:
            n, first = lengths[i], starts[i]
            packed_ids[r, at:at + n] = tokens[first:first + n]
            positions[r, at:at + n] = torch.arange(n)
            row[first:first + n], col[first:first + n] = r, torch.arange(at, at + n)
            at += n
        positions[r, at:] = torch.arange(capacity - at)
    device = ids.device
    return Packed(packed_ids.to(device), positions.to(device), row.to(device), col.to(device), mask)


def unpack(packed: Packed, outputs: torch.Tensor) -> torch.Tensor:
    """(rows, capacity, ...) outputs of a packed pass back to the padded (batch, width, ...) layout; zeros on padding.
    Differentiable: gradients flow back to the packed pass."""
    keep = packed.mask.bool()
    out = outputs.new_zeros((*keep.shape, *outputs.shape[2:]))
    out[keep] = outputs[packed.row, packed.col]
    return out


def padded_hidden(decoder, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The decoder's last hidden states for a padded batch, the plain way."""
    positions = (mask.cumsum(1) - 1).clamp(min=0)  # left padding: positions as generate() saw them
    return decoder(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=False).last_hidden_state


def packed_hidden(decoder, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The same, computed on the packed real tokens; zeros on padding."""
    packed = pack(ids, mask)
    hidden = decoder(input_ids=packed.ids, position_ids=packed.position_ids, attention_mask=None,
                     use_cache=False).last_hidden_state
    return unpack(packed, hidden)


def shared_prefix(ids: torch.Tensor, mask: torch.Tensor) -> int:
    """How many leading real tokens every sequence of a padded batch has in common, leaving each at least one of
    its own."""
    keep = mask.bool()
    lengths = keep.sum(1)
    shortest = int(lengths.min())
    if len(ids) < 2 or shortest < 2:
        return 0
    firsts = torch.stack([row[k][:shortest] for row, k in zip(ids, keep)])  # each sequence's first real tokens
    same = (firsts == firsts[:1]).all(0).long()
    return min(int(same.cumprod(0).sum()), shortest - 1)


def prefix_shared_hidden(decoder, ids: torch.Tensor, mask: torch.Tensor, prefix: int) -> torch.Tensor:
    """The decoder's last hidden states for a padded batch whose sequences share their first `prefix` real tokens,
    computed on one row: those tokens once, then each sequence's own tokens; zeros on padding. Differentiable."""
    keep = mask.bool()
    lengths = keep.sum(1)
    batch, device = len(ids), ids.device
    tokens = ids[keep]  # row-major: sequence 0's real tokens, then sequence 1's...
    sequence = torch.arange(batch, device=device).repeat_interleave(lengths)
    index = torch.arange(len(tokens), device=device) - (lengths.cumsum(0) - lengths).repeat_interleave(lengths)
    own = lengths - prefix
    own_start = prefix + own.cumsum(0) - own  # where each sequence's own tokens begin in the row
    in_prefix = index < prefix
    place = torch.where(in_prefix, index, own_start[sequence] + index - prefix)  # each real token's slot in the row
    length = prefix + int(own.sum())
    row = tokens.new_empty(length)
    positions = torch.empty(length, dtype=torch.long, device=device)
    segment = torch.empty(length, dtype=torch.long, device=device)
    row[place], positions[place] = tokens, index  # the prefix's slots are written by every sequence, alike
    segment[place] = torch.where(in_prefix, -1, sequence)
    slots = torch.arange(length, device=device)
    visible = (slots[None, :] <= slots[:, None]) & ((segment[None, :] == segment[:, None]) | (segment[None, :] == -1))
    hidden = decoder(input_ids=row[None], position_ids=positions[None], attention_mask=visible[None, None],
                     use_cache=False).last_hidden_state[0]
    out = hidden.new_zeros((*keep.shape, hidden.shape[-1]))
    out[keep] = hidden[place]
    return out


def padding_free_hidden(decoder, ids: torch.Tensor, mask: torch.Tensor, share_prefix: bool = True) -> torch.Tensor:
    """The padded pass's hidden states without its padding: on one row with the common prefix computed once where
    the batch has one and the row stays short, else on packed rows."""
    if share_prefix:
        prefix = shared_prefix(ids, mask)
        if prefix >= MIN_SHARED_PREFIX and int(mask.sum()) - (len(ids) - 1) * prefix <= MAX_SHARED_ROW:
            return prefix_shared_hidden(decoder, ids, mask, prefix)
    return packed_hidden(decoder, ids, mask)


@torch.no_grad()
def same_as_padded(decoder, ids: torch.Tensor, mask: torch.Tensor, hidden) -> bool:
    """Whether `hidden(decoder, ids, mask)` gives the padded pass's hidden states on this model: a pass that lets
    sequences see what they should not changes them wholesale, not by rounding. Any failure counts as no."""
    try:
        got = hidden(decoder, ids, mask).float()
    except Exception:  # noqa: BLE001 - any failure means: do not use that pass
        return False
    padded = padded_hidden(decoder, ids, mask).float() * mask[..., None]
    return bool((got - padded).norm() <= 0.05 * padded.norm())


def packing_works(decoder, device) -> bool:
    """Whether this model keeps packed sequences apart. transformers' own architectures read restarting
    `position_ids` as boundaries; a model that does not would let sequences attend to each other, so this is checked
    once, on two short sequences (otherwise: padded passes)."""
    ids = torch.tensor([[11, 12, 13, 14, 15], [0, 0, 21, 22, 23]], device=device)
    mask = torch.tensor([[1, 1, 1, 1, 1], [0, 0, 1, 1, 1]], device=device)
    return same_as_padded(decoder, ids, mask, packed_hidden)


def prefix_sharing_works(decoder, device) -> bool:
    """Whether this model takes a custom 4D attention mask (transformers' own architectures do); checked once, as
    `packing_works` is, on two sequences that share three tokens (otherwise: packed rows)."""
    ids = torch.tensor([[11, 12, 13, 14, 15], [0, 11, 12, 13, 22]], device=device)
    mask = torch.tensor([[1, 1, 1, 1, 1], [0, 1, 1, 1, 1]], device=device)
    return same_as_padded(decoder, ids, mask, lambda d, i, m: prefix_shared_hidden(d, i, m, 3))
