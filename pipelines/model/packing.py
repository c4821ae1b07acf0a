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
~39), and a preference pair's two answers share their whole prompt. Where the sequences of a batch start alike, the
pass runs on one row instead: the batch's prefix tree, each distinct start once (the system turn once per batch, a
pair's prompt once for both answers), each token at its own position, and a 4D mask that lets a token see exactly
the earlier tokens of its own sequence. So the numbers are again the padded pass's up to rounding. Measured on a
2-core CPU: PPO's quick batches (8 sequences of ~63 tokens, 24 shared) become 311 tokens instead of 479, a forward
0.76 -> 0.47 s and a forward + backward 1.71 -> 1.02 s against packed rows; a reward batch (8 pairs, 904 real
tokens in 16 rows of 68) becomes 421 tokens, a forward + backward 2.88 -> 1.36 s against the padded pass.

TRL's SFT, reward and DPO trainers call the model with right-padded batches: `padding_free_passes` puts the same
pass under their calls, in the decoder, so their losses and metrics are computed as before, on the same numbers.
"""

from __future__ import annotations

import functools
import inspect
from dataclasses import dataclass

import torch
from transformers.modeling_outputs import BaseModelOutputWithPast

MIN_SHARED_PREFIX = 8  # tokens per sequence, on average: below, sharing saves less than the long row's attention costs
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


@dataclass
class Tree:
    """The distinct prefixes of a padded batch's sequences, as one row: a slot per distinct prefix, so tokens that
    several sequences start with alike take one slot between them."""

    ids: torch.Tensor  # (slots,) each slot's token
    positions: torch.Tensor  # (slots,) its position in its sequences
    place: torch.Tensor  # (real tokens,) each real token's slot, in the order of `mask.bool()` indexing
    paths: list[list[int]]  # each sequence's slots, in order

    def visible(self) -> torch.Tensor:
        """(slots, slots) bool: what each slot may attend to, itself and its ancestors, i.e. the earlier tokens of
        its own sequence (the same in every sequence through it). Built only for a row short enough to use."""
        device = self.ids.device
        visible = torch.zeros((len(self.ids), len(self.ids)), dtype=torch.bool, device=device)
        for path in self.paths:
            path = torch.tensor(path, device=device)
            visible[path[:, None], path[None, :]] = torch.ones(len(path), len(path), dtype=torch.bool,
                                                               device=device).tril()
        return visible


def prefix_tree(ids: torch.Tensor, mask: torch.Tensor) -> Tree:
    """The batch's real tokens (contiguous in each row) merged where sequences start alike. In lexicographic order
    each sequence shares the most with the sequence just before it: its first `common` tokens take that sequence's
    slots, the rest new ones."""
    keep = mask.bool()
    lengths = keep.sum(1).tolist()
    flat = ids[keep].tolist()
    starts = [0]
    for n in lengths:
        starts.append(starts[-1] + n)
    sequences = [flat[a:b] for a, b in zip(starts, starts[1:])]
    paths: list[list[int]] = [[] for _ in sequences]
    previous, count = None, 0
    for i in sorted(range(len(sequences)), key=sequences.__getitem__):
        sequence, common = sequences[i], 0
        if previous is not None:
            earlier = sequences[previous]
            while common < min(len(earlier), len(sequence)) and earlier[common] == sequence[common]:
                common += 1
        paths[i] = paths[previous][:common] if previous is not None else []
        paths[i] += range(count, count + len(sequence) - common)
        count += len(sequence) - common
        previous = i
    device = ids.device
    place = torch.tensor([s for path in paths for s in path], dtype=torch.long, device=device)
    index = torch.cat([torch.arange(n, device=device) for n in lengths])  # each real token's position
    row = ids.new_empty(count)
    positions = torch.empty(count, dtype=torch.long, device=device)
    row[place], positions[place] = ids[keep], index  # a shared slot is written by each of its sequences, alike
    return Tree(row, positions, place, paths)


def tree_hidden(decoder, ids: torch.Tensor, mask: torch.Tensor, tree: Tree | None = None) -> torch.Tensor:
    """The decoder's last hidden states for a padded batch, computed on its prefix tree's one row: each token
    sees exactly what it saw in its own sequence, at the same position; zeros on padding. Differentiable."""
    tree = tree or prefix_tree(ids, mask)
    attend = tree_mask(tree.visible(), decoder)[None, None]
    hidden = decoder(input_ids=tree.ids[None], position_ids=tree.positions[None], attention_mask=attend,
                     use_cache=False).last_hidden_state[0]
    out = hidden.new_zeros((*mask.shape, hidden.shape[-1]))
    out[mask.bool()] = hidden[tree.place]
    return out


def tree_mask(visible: torch.Tensor, decoder) -> torch.Tensor:
    """The tree's "may attend" mask as the decoder's attention reads it. transformers hands a 4D mask to the
    attention as it is: SDPA and flash kernels take a boolean one, but an eager attention adds the mask to its scores
    (Gemma 2 is always eager), where a boolean mask would add 1 and 0 and mask nothing. There it gets an additive
    float mask (0 where allowed, float32's minimum elsewhere). `decoder`: the module, or its own forward
    (padding_free_passes)."""
    config = getattr(getattr(decoder, "__self__", decoder), "config", None)
    if getattr(config, "_attn_implementation", None) != "eager":
        return visible
    return torch.zeros(visible.shape, device=visible.device).masked_fill_(~visible, torch.finfo(torch.float32).min)


def padding_free_hidden(decoder, ids: torch.Tensor, mask: torch.Tensor, share_prefix: bool = True) -> torch.Tensor:
    """The padded pass's hidden states without its padding: on the prefix tree's one row where that pays, else on
    packed rows."""
    tree = shared_tree(ids, mask) if share_prefix else None
    if tree is not None:
        return tree_hidden(decoder, ids, mask, tree)
    return packed_hidden(decoder, ids, mask)


def shared_tree(ids: torch.Tensor, mask: torch.Tensor) -> Tree | None:
    """The batch's prefix tree where it pays: several sequences that share at least `MIN_SHARED_PREFIX` tokens
    each on average, in a row of at most `MAX_SHARED_ROW`. Else None (a lone sequence keeps its causal pass, which a
    GPU runs with its fastest attention kernel)."""
    if len(ids) < 2:
        return None
    tree = prefix_tree(ids, mask)
    shared = int(mask.sum()) - len(tree.ids)
    if shared >= MIN_SHARED_PREFIX * (len(ids) - 1) and len(tree.ids) <= MAX_SHARED_ROW:
        return tree
    return None


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
    config = getattr(decoder, "config", None)
    if config is not None and window_shorter_than_a_row(config):
        return False
    ids = torch.tensor([[11, 12, 13, 14, 15], [0, 11, 12, 13, 22]], device=device)
    mask = torch.tensor([[1, 1, 1, 1, 1], [0, 1, 1, 1, 1]], device=device)
    return same_as_padded(decoder, ids, mask, tree_hidden)


def window_shorter_than_a_row(config) -> bool:
    """Whether the model has sliding-window attention with a window a tree row could outrun: transformers applies
    a given 4D mask as it is, so its sliding layers would let a token see past the window (Gemma 3: 512). The
    five-token check cannot show that; packed rows keep the model's own masks."""
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    window = getattr(text, "sliding_window", None)
    return bool(window) and getattr(text, "use_sliding_window", True) is not False and window < MAX_SHARED_ROW


def padding_free_passes(model, device) -> str:
    """Make a model's padded training passes padding-free, for trainers that call it with padded batches (TRL's SFT,
    reward and DPO trainers, the judge's scoring): its decoder computes a right-padded batch given without
    positions or a cache on the prefix tree's one row, or else on packed rows, and hands back the hidden states in
    the padded layout, so
    everything after the decoder (the LM head, TRL's fused loss, the score head reading the last real token) runs
    unchanged. Any other call (generation, left padding, explicit positions, a lone sequence, a batch with neither
    padding nor a shared start) runs the decoder's own forward. Checked first on this model, like PPO's passes.
    With dropout on, a slot that several sequences share draws its dropout once for all of them: the same
    expectation as the padded pass, with noise correlated between those sequences (the tests compare the two with
    dropout off). Returns how passes run, for the log."""
    causal = model.get_base_model() if hasattr(model, "get_base_model") else model
    decoder = causal.base_model
    was_training = decoder.training
    decoder.eval()  # the check compares two passes: dropout would tell them apart
    packs, shares = packing_works(decoder, device), False
    if packs:
        shares = prefix_sharing_works(decoder, device)
    decoder.train(was_training)
    if not packs:
        return "padded batches (this model does not keep packed sequences apart)"
    own_forward = decoder.forward
    signature = inspect.signature(own_forward)  # callers pass input_ids by position too (the score head does)

    @functools.wraps(own_forward)
    def forward(*args, **kwargs):
        given = signature.bind_partial(*args, **kwargs).arguments
        given = {**given.pop("kwargs", {}), **given}
        ids, mask = given.get("input_ids"), given.get("attention_mask")
        others = [v for k, v in given.items() if k not in ("input_ids", "attention_mask", "use_cache")]
        if (given.get("use_cache") is False and ids is not None and mask is not None
                and mask.dim() == 2 and len(ids) > 1 and all(v is None for v in others)
                and not (decoder.config.output_hidden_states or decoder.config.output_attentions)
                and right_padded(mask)):
            tree = shared_tree(ids, mask) if shares else None
            if tree is not None:
                return BaseModelOutputWithPast(last_hidden_state=tree_hidden(own_forward, ids, mask, tree))
            if not bool(mask.all()):
                return BaseModelOutputWithPast(last_hidden_state=packed_hidden(own_forward, ids, mask))
        return own_forward(*args, **kwargs)

    decoder.forward = forward
    return "real tokens only, shared starts computed once" if shares else "real tokens only, in packed rows"


def right_padded(mask: torch.Tensor) -> bool:
    """Every row's real tokens first: the layout in which the padded pass numbers them 0, 1, ... as we do."""
    return bool(mask[:, 0].all() and (mask[:, 1:] <= mask[:, :-1]).all())
