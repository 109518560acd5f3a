"""Prefix reuse that is exact whatever else is scored: prompts computed in pieces cut where
conversations branch, each piece once, in passes whose shape is a function of the piece alone.

A participant's questions in one stage share their system message (persona, instructions,
stimulus, memory of earlier rounds), a round's system message extends most of the round
before's, and a later stage's prompt extends an earlier stage's prompt through the generation
prompt where that answer began (the belief answers come before the action question). So each
prompt is cut into pieces: every SEGMENT tokens of its first turn, right after its first turn,
right after each generation prompt in it, every MAX_PIECE tokens of a longer stretch, and at
its end (the cuts after the first turn come from `ChatPrompt.cuts`).

A piece of w tokens at positions [a, a + w) is computed as ceil(w / STEP) * STEP new tokens
(left-padded, so its last token is the pass's last) over a past of ceil(a / SEGMENT) * SEGMENT
positions (its own earlier pieces, then zeros), the padding hidden by its attention mask, while
every linear layer multiplies its input in blocks of rows that round each row as BLOCK-row
products do (`blocked_linears`). A matrix product rounds differently with its shape, so
batches of different sizes would give a row different bits (measured:
benchmarks/batch_invariance.py); with every shape a row's arithmetic sees fixed by the piece
itself, a row gets the same bits alone or beside any others,
in any row (tests/test_prefix_reuse.py), and pieces of one shape share a pass however many
there are. So a piece's keys and values (KV) and last logits are a function of its token
prefix and the cuts before it alone; they are kept under that key and read by any later
prompt or call that has them. A resumed run, which finds nothing kept, computes the very same
bits as the run that was killed, and what the store keeps or evicts changes speed only, never
an answer.

Costs, measured with SmolLM2-135M in float32 on 2 CPU cores: products of BLOCK rows run about
35% slower per row than whole-batch ones, so a pass's rows are multiplied in the largest of
SIZES that fit wherever those are found to round every row as BLOCK-row products do (`agrees`:
on these cores every size from 4 rows up does), which took a 24-twin replay of the flagship's
prompts from 88.8 s to 74.8 s with the same bits. The scheme before this one (fixed [8, 64]
segments, no blocking) ran faster per slot but cut every prompt at multiples of 64 tokens, so
the partial segment at each branch was computed once per branch, and filled short batches with
copies. Against the code before any of this (benchmarks/against_commit.py, docs/results.md),
the flagship runs 2.10x as fast on 24 twins and 2.03x on 48.

Memory: the kept pieces (at most `cache_bytes`, shared by all policies; what does not fit goes
to files within `spill_bytes`, engine/backends/piece_store.py), plus the pieces of one
chunk of prompts while it is computed (at most half of `cache_bytes`), plus one pass's past
and new positions, twice (the model's cache copies it; at most half of `cache_bytes` each).
"""

from __future__ import annotations

import contextlib
import functools
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from transformers import DynamicCache

from engine.backends.piece_store import Key, Piece, SegmentStore

SEGMENT = 64  # tokens of a first-turn piece, and the step a pass's past is padded to
STEP = 16  # a pass's new tokens are padded to a multiple of this
MAX_PIECE = 512  # a longer stretch between cuts is cut every this many tokens
BLOCK = 64  # token rows per matrix product in a linear layer (what makes rows batch-invariant)
PASS_TOKENS = 4096  # at most this many new token slots per pass


@dataclass
class Task:
    """A piece to compute: its key, where it starts and ends, and the keys of the pieces before."""

    key: Key
    start: int
    end: int
    before: list[Key]

    @property
    def shape(self) -> tuple[int, int]:
        """(past positions, new tokens) of a pass that computes it."""
        return (-(-self.start // SEGMENT) * SEGMENT, -(-(self.end - self.start) // STEP) * STEP)


class SegmentScorer:
    """Scores prompts one policy at a time, piece by piece, reusing computed pieces."""

    def __init__(self, model: Callable[[], torch.nn.Module], *, cache_bytes: int,
                 token_bytes: int, device: str, spill_bytes: int = 0,
                 spill_root: str | None = None) -> None:
        self.model, self.device = model, device
        self.store = SegmentStore(cache_bytes, spill_bytes, spill_root, device)
        # token positions worth half the store's bytes bound both the new pieces of one chunk
        # and one pass's past and new positions (its KV is built, then copied by the model's cache)
        half = max(cache_bytes // 2 // max(token_bytes, 1), 2 * PASS_TOKENS)
        self.chunk_tokens = self.pass_positions = half
        self.computed = 0  # real prompt tokens run through the model
        self.slots = 0  # token positions the passes held (padding too)

    def forget(self) -> None:
        """Drop every kept piece (the weights are about to change)."""
        self.store.clear()

    def next_call(self) -> None:
        """A new call begins: its policies follow in sorted order (see SegmentStore)."""
        self.store.call += 1

    def label_logprobs(self, policy: str, prompts: list[list[int]], cuts: list[tuple[int, ...]],
                       labels: list[list[int]]) -> list[np.ndarray]:
        """For each prompt, the log-probabilities of its label tokens at its answer position;
        `cuts[i]`: where prompt i's first turn and later pieces end, ascending, the last at
        its end."""
        plans = {tuple(p): pieces(policy, tuple(p), c) for p, c in zip(prompts, cuts, strict=True)}
        found: dict[tuple[int, ...], np.ndarray] = {}
        with blocked_linears(self.model()):
            for chunk in self._chunks(sorted(plans), plans):  # sorted: sharers come together
                work = self._compute(policy, chunk, plans)
                for prompt in chunk:
                    logits = work[plans[prompt][-1].key].logits
                    found[prompt] = torch.log_softmax(logits.double(), dim=-1).cpu().numpy()
        return [found[tuple(p)][ids] for p, ids in zip(prompts, labels, strict=True)]

    def _chunks(self, distinct: list[tuple[int, ...]],
                plans: dict[tuple[int, ...], list[Task]]) -> list[list[tuple[int, ...]]]:
        """Runs of sorted prompts whose new pieces hold at most `chunk_tokens` tokens."""
        chunks: list[list[tuple[int, ...]]] = [[]]
        tokens, seen = 0, set()
        for prompt in distinct:
            new = sum(t.end - t.start for t in plans[prompt] if t.key not in seen)
            if chunks[-1] and tokens + new > self.chunk_tokens:
                chunks.append([])
                tokens, seen = 0, set()
                new = len(prompt)
            chunks[-1].append(prompt)
            seen.update(t.key for t in plans[prompt])
            tokens += new
        return [c for c in chunks if c]

    @torch.inference_mode()
    def _compute(self, policy: str, chunk: list[tuple[int, ...]],
                 plans: dict[tuple[int, ...], list[Task]]) -> dict[Key, Piece]:
        """Every piece of the chunk's prompts: kept, or computed in passes of one shape each. A
        shape's pass runs once every piece of that shape is ready (or a pass is full), so
        pieces of one shape share as few passes as their order allows."""
        missing = {t.key: t.shape for prompt in chunk for t in plans[prompt]
                   if t.key not in self.store}
        remaining = Counter(missing.values())  # pieces of each shape not computed yet
        work: dict[Key, Piece] = {}
        computed: dict[Key, Piece] = {}
        waiting: dict[Key, list[tuple[int, ...]]] = {}  # a queued piece and the prompts it holds up
        queues: dict[tuple[int, int], list[Task]] = {}
        done = dict.fromkeys(chunk, 0)  # pieces of each prompt there so far

        def advance(prompt: tuple[int, ...]) -> None:
            plan = plans[prompt]
            while done[prompt] < len(plan):
                task = plan[done[prompt]]
                if task.key not in work:
                    kept = self.store.get(task.key)
                    if kept is None:
                        if task.key not in waiting:
                            if task.key not in missing:  # its file could not be read back
                                missing[task.key] = task.shape
                                remaining[task.shape] += 1
                            waiting[task.key] = []
                            queues.setdefault(task.shape, []).append(task)
                        waiting[task.key].append(prompt)
                        return
                    work[task.key] = kept
                done[prompt] += 1

        for prompt in chunk:
            advance(prompt)
        while queues:
            ready = [s for s, q in queues.items()
                     if len(q) >= remaining[s] or len(q) * s[1] >= PASS_TOKENS] or list(queues)
            shape = max(ready, key=lambda s: (len(queues[s]) * s[1], s))
            rows = max(1, min(PASS_TOKENS // shape[1], self.pass_positions // sum(shape)))
            batch, queues[shape] = queues[shape][:rows], queues[shape][rows:]
            remaining[shape] -= len(batch)
            if not queues[shape]:
                del queues[shape]
            for task, piece in zip(batch, self._run(shape, batch, work), strict=True):
                work[task.key] = computed[task.key] = piece
                for prompt in waiting.pop(task.key):
                    done[prompt] += 1
                    advance(prompt)
        self.store.add(computed, (policy, chunk[0], (), 0))
        return work

    def _run(self, shape: tuple[int, int], tasks: list[Task],
             work: dict[Key, Piece]) -> list[Piece]:
        """One pass of len(tasks) rows of `width` new tokens over a past of `past_len` positions:
        a row's own earlier pieces, zeros its mask hides, then its new tokens left-padded (so
        every row's last token is the pass's last); each task's piece."""
        past_len, width = shape
        rows = len(tasks)
        ids = torch.zeros(rows, width, dtype=torch.long)
        positions = torch.zeros(rows, width, dtype=torch.long)
        mask = torch.zeros(rows, 1, width, past_len + width, dtype=torch.bool)
        causal = torch.ones(width, width, dtype=torch.bool).tril()
        for r, task in enumerate(tasks):
            new = task.key[1][task.start:]
            pad = width - len(new)
            ids[r, pad:] = torch.tensor(new)
            positions[r] = torch.arange(task.start - pad, task.start + len(new)).clamp(min=0)
            mask[r, 0, :, :task.start] = True
            mask[r, 0, :, past_len:] = causal
            mask[r, 0, pad:, past_len:past_len + pad] = False  # real tokens never see the padding
        cache = DynamicCache()
        if past_len:
            cache = DynamicCache([tuple(torch.cat([_padded(work, t, layer, kind, past_len)
                                                   for t in tasks]) for kind in (0, 1))
                                  for layer in range(len(work[tasks[0].before[0]].kv))])
        out = self.model()(input_ids=ids.to(self.device), position_ids=positions.to(self.device),
                           attention_mask=mask.to(self.device), past_key_values=cache,
                           use_cache=True, logits_to_keep=1)
        self.computed += sum(t.end - t.start for t in tasks)
        self.slots += rows * width
        layers = out.past_key_values.layers
        first = past_len + width
        return [Piece([(layer.keys[r:r + 1, :, first - (t.end - t.start):first].contiguous(),
                        layer.values[r:r + 1, :, first - (t.end - t.start):first].contiguous())
                       for layer in layers], out.logits[r, -1].clone())
                for r, t in enumerate(tasks)]


@contextlib.contextmanager
def blocked_linears(model: torch.nn.Module) -> Iterator[None]:
    """Inside, every linear layer of `model` multiplies its input in fixed blocks of token rows:
    as many of the largest SIZES as fit, then BLOCK rows at a time (the last padded).

    A matrix product's rounding depends on its shape (measured: a row's float32 logits move by
    4e-5 between batches of 1 and 3 rows), so with whole-batch products a row's bits would
    depend on how many rows share its pass. BLOCK-row products fix them; a larger size is used
    on a layer only where its products were found bit-equal to BLOCK-row ones for that layer's
    weight shape, dtype, device and thread count (`agrees`), so a row's bits are those of
    BLOCK-row products whichever sizes its pass was cut into, and depend on its own inputs
    alone."""
    layers = [m for m in model.modules()
              if isinstance(m, torch.nn.Linear) and "forward" not in vars(m)]
    for layer in layers:
        layer.forward = functools.partial(_blocked, layer)
    try:
        yield
    finally:
        for layer in layers:
            del layer.forward


# Larger products run faster per row: on 2 CPU cores (SmolLM2-135M's shapes, float32) 64-row
# products cost 1.66 ms per token, 256-row ones 1.33, 1024-row ones 1.13 (whole-batch: 1.08).
SIZES = (4096, 2048, 1024, 512, 256, 128, BLOCK)


def _blocked(layer: torch.nn.Linear, x: torch.Tensor) -> torch.Tensor:
    """`layer(x)` in blocks of rows: the largest SIZES that fit and agree with BLOCK-row
    products on this layer, then BLOCK rows at a time (the last block padded with zeros)."""
    flat = x.reshape(-1, x.shape[-1])
    tokens = flat.shape[0]
    out = flat.new_empty(tokens, layer.out_features)
    first = 0
    for size in [s for s in SIZES if s <= tokens and agrees(layer, s)]:
        while tokens - first >= size:
            out[first:first + size] = F.linear(flat[first:first + size], layer.weight, layer.bias)
            first += size
    if first < tokens:
        block = torch.cat([flat[first:], flat.new_zeros(BLOCK - (tokens - first), flat.shape[1])])
        out[first:] = F.linear(block, layer.weight, layer.bias)[:tokens - first]
    return out.reshape(*x.shape[:-1], layer.out_features)


def agrees(layer: torch.nn.Linear, size: int) -> bool:
    """Whether `size`-row products give this layer's rows the bits BLOCK-row products give."""
    weight = layer.weight
    return size == BLOCK or _agrees(tuple(weight.shape), tuple(weight.stride()), weight.dtype,
                                    str(weight.device), torch.get_num_threads(),
                                    torch.get_float32_matmul_precision(), layer.bias is not None,
                                    size)


@functools.cache
def _agrees(shape: tuple[int, int], stride: tuple[int, int], dtype: torch.dtype, device: str,
            threads: int, precision: str, bias: bool, size: int) -> bool:
    """Whether `size`-row products with a weight of `shape` and `stride` give every row the bits
    BLOCK-row products give. A product's rounding follows from its shapes, strides, dtype,
    device, threads and matmul precision, not from the values, so one random input settles it
    (measured on 2 CPU cores: every size from 4 rows up agrees; 1 to 3 rows take another path).
    `threads` and `precision` are the current ones (part of the key only)."""
    generator = torch.Generator().manual_seed(0)
    weight = torch.empty_strided(shape, stride, dtype=dtype, device=device)
    weight.copy_(torch.randn(shape, generator=generator))
    offset = (torch.randn(shape[0], generator=generator).to(dtype=dtype, device=device)
              if bias else None)
    rows = torch.randn(size, shape[1], generator=generator).to(dtype=dtype, device=device)
    whole = F.linear(rows, weight, offset)
    return all(torch.equal(whole[i:i + BLOCK], F.linear(rows[i:i + BLOCK], weight, offset))
               for i in range(0, size, BLOCK))


def _padded(work: dict[Key, Piece], task: Task, layer: int, kind: int,
            past_len: int) -> torch.Tensor:
    """A task's past in one layer: its earlier pieces' keys (0) or values (1), zeros after."""
    parts = [work[key].kv[layer][kind] for key in task.before]
    pad = past_len - task.start
    if pad:
        first = parts[0]
        parts.append(first.new_zeros(1, first.shape[1], pad, first.shape[3]))
    return torch.cat(parts, dim=2)


def pieces(policy: str, prompt: tuple[int, ...], cuts: tuple[int, ...]) -> list[Task]:
    """A prompt's pieces in order: every SEGMENT tokens of its first turn (the first cut), the
    cuts, and every MAX_PIECE tokens of a longer stretch between them."""
    if not cuts or cuts[-1] != len(prompt) or list(cuts) != sorted(set(cuts)) or cuts[0] <= 0:
        raise ValueError(f"cuts {cuts} do not end a prompt of {len(prompt)} tokens")
    ends = list(range(SEGMENT, cuts[0], SEGMENT))
    for end in cuts:
        ends.extend(range(ends[-1] + MAX_PIECE if ends else MAX_PIECE, end, MAX_PIECE))
        ends.append(end)
    tasks: list[Task] = []
    start = 0
    for i, end in enumerate(ends):
        key = (policy, prompt[:end], tuple(ends[:i + 1]))
        tasks.append(Task(key, start, end, [t.key for t in tasks]))
        start = end
    return tasks
