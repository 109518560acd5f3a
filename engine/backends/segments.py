"""Prefix reuse that is exact whatever else is scored: prompts computed in fixed-shape segments.

A participant's questions in one stage share their whole system message (persona, instructions,
stimulus, memory of earlier rounds), and a stage's prompts extend the prompts of the stage
before (the belief answers come before the action question). Every prompt is cut into segments
of SEGMENT tokens; segment j is computed in a forward pass of exactly [ROWS, SEGMENT] new tokens
at positions [j*SEGMENT, (j+1)*SEGMENT), over a past of exactly the row's segments 0..j-1 (no
padding, no attention mask; a short batch is filled with copies of its first row). A prompt's
short last segment is padded on the right, which causal attention never reads, to a width that
depends on its length alone. Measured on this project's machines
(benchmarks/batch_invariance.py), one fixed shape gives every row the same bits whatever the
other rows hold, while batches of other shapes round differently (bf16 logits by up to 0.6). So
a full segment's keys and values (KV) are a function of its token prefix alone, and can be kept
under that prefix and read by any later call: a resumed run, which finds nothing kept, computes
the very same bits as the run that was killed, and what the store keeps or evicts changes speed
only, never an answer.

Memory: the KV of one chunk of prompts while it is computed (a quarter of `cache_bytes`, at
least two token budgets' worth), plus the kept segments (at most `cache_bytes`, shared by all
policies), plus one forward pass's past: ROWS x j x SEGMENT tokens.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from transformers import DynamicCache

SEGMENT = 64  # tokens per row of a forward pass (the unit of reuse)
ROWS = 8  # rows per forward pass; measured: batch-1 segments cost 1.8-2.3x as much per token
# A prompt's short last segment (never kept: its KV is read by no other prompt) is padded to the
# next multiple of STEP: its shape is still a function of the prompt alone, with less padding.
STEP = 16

Key = tuple[str, tuple[int, ...]]  # (policy, the token prefix a segment ends)


class SegmentStore:
    """Kept segments' KV by (policy, token prefix), within a byte budget.

    Prompts are swept in sorted order, so a kept segment that sorts before the sweep's position
    will not be asked for again in this call, and the next call (the next stage, extending these
    prompts) sweeps in the same order from the start. When full, the store makes room from
    segments last used before the previous call, then from older calls' segments the sweep has
    passed; otherwise it keeps what it has (the earliest prompts), which the next sweep reads
    first."""

    def __init__(self, budget: int) -> None:
        self.budget, self.nbytes, self.call = budget, 0, 0
        self.kept: dict[Key, tuple[torch.Tensor, int]] = {}  # KV and the last call that used it

    def get(self, key: Key) -> torch.Tensor | None:
        found = self.kept.get(key)
        if found is None:
            return None
        self.kept[key] = (found[0], self.call)
        return found[0]

    def add(self, new: dict[Key, torch.Tensor], position: Key) -> None:
        """Keep `new` segments if room can be made for them (all or the earliest)."""
        size = sum(t.numel() * t.element_size() for t in new.values())
        if self.nbytes + size > self.budget:
            stale = [k for k, (_, c) in self.kept.items() if c < self.call - 1]
            passed = sorted(k for k, (_, c) in self.kept.items()
                            if c == self.call - 1 and k < position)
            for key in (*stale, *passed):
                if self.nbytes + size <= self.budget:
                    break
                tensor, _ = self.kept.pop(key)
                self.nbytes -= tensor.numel() * tensor.element_size()
        for key in sorted(new):
            tensor = new[key]
            nbytes = tensor.numel() * tensor.element_size()
            if self.nbytes + nbytes > self.budget:
                break
            self.kept[key] = (tensor, self.call)
            self.nbytes += nbytes

    def clear(self) -> None:
        self.kept.clear()
        self.nbytes = 0


class SegmentScorer:
    """Scores prompts one policy at a time, segment by segment, reusing computed segments."""

    def __init__(self, forward: Callable[..., Any], *, token_budget: int, cache_bytes: int,
                 token_bytes: int, device: str) -> None:
        self.forward, self.device = forward, device
        self.chunk_tokens = max(cache_bytes // 4 // max(token_bytes, 1), 2 * token_budget)
        self.store = SegmentStore(cache_bytes)
        self.computed = 0  # real prompt tokens run through the model

    def forget(self) -> None:
        """Drop every kept segment (the weights are about to change)."""
        self.store.clear()

    def next_call(self) -> None:
        """A new call begins: its policies follow in sorted order (see SegmentStore)."""
        self.store.call += 1

    def label_logprobs(self, policy: str, prompts: list[list[int]],
                       labels: list[list[int]]) -> list[np.ndarray]:
        """For each prompt, the log-probabilities of its label tokens at its answer position."""
        distinct = sorted({tuple(p) for p in prompts})
        found: dict[tuple[int, ...], np.ndarray] = {}
        for chunk in self._chunks(distinct):
            found.update(self._score_chunk(policy, chunk))
        return [found[tuple(p)][ids] for p, ids in zip(prompts, labels, strict=True)]

    def _chunks(self, distinct: list[tuple[int, ...]]) -> list[list[tuple[int, ...]]]:
        """Runs of sorted prompts whose new segments hold at most `chunk_tokens` tokens."""
        chunks: list[list[tuple[int, ...]]] = [[]]
        tokens = 0
        for i, prompt in enumerate(distinct):
            shared = 0 if i == 0 else _shared_segments(distinct[i - 1], prompt) * SEGMENT
            if chunks[-1] and tokens + len(prompt) - shared > self.chunk_tokens:
                chunks.append([])
                tokens, shared = 0, 0
            chunks[-1].append(prompt)
            tokens += len(prompt) - shared
        return [c for c in chunks if c]

    def _score_chunk(self, policy: str,
                     prompts: list[tuple[int, ...]]) -> dict[tuple[int, ...], np.ndarray]:
        """Depth by depth: each segment the chunk needs is read from the store or computed."""
        work: dict[tuple[int, ...], torch.Tensor] = {}  # a segment's KV by the prefix it ends
        computed: dict[Key, torch.Tensor] = {}
        out: dict[tuple[int, ...], np.ndarray] = {}
        for depth in range(max(-(-len(p) // SEGMENT) for p in prompts)):
            todo: dict[tuple[int, ...], bool] = {}  # prefix -> whether its logits are wanted
            end = (depth + 1) * SEGMENT
            for prompt in prompts:
                if depth * SEGMENT >= len(prompt):
                    continue
                prefix = prompt[:end]
                final = end >= len(prompt)
                if not final and prefix not in work:
                    kept = self.store.get((policy, prefix))
                    if kept is not None:
                        work[prefix] = kept
                if final or prefix not in work:
                    todo[prefix] = todo.get(prefix, False) or final
            widths: dict[int, list[tuple[tuple[int, ...], bool]]] = {}
            for prefix, final in todo.items():  # a short last segment: the next multiple of 16
                width = min(SEGMENT, -(-(len(prefix) - depth * SEGMENT) // STEP) * STEP)
                widths.setdefault(width, []).append((prefix, final))
            for width, todo_list in sorted(widths.items()):
                for first in range(0, len(todo_list), ROWS):
                    batch = todo_list[first:first + ROWS]
                    kvs, logprobs = self._run(depth, width, [p for p, _ in batch], work)
                    for r, ((prefix, final), row) in enumerate(zip(batch, logprobs, strict=True)):
                        if r in kvs:
                            work[prefix] = computed[(policy, prefix)] = kvs[r]
                        if final:
                            out[prefix] = row
        self.store.add(computed, (policy, prompts[0]))
        return out

    @torch.inference_mode()
    def _run(self, depth: int, width: int, prefixes: list[tuple[int, ...]],
             work: dict[tuple[int, ...], torch.Tensor]) -> tuple[dict[int, torch.Tensor],
                                                                 np.ndarray]:
        """One [ROWS, width] forward pass: each prefix's segment `depth` over its past; each
        whole new segment's KV ([layers, 2, heads, SEGMENT, dim]) by row, and each row's
        last-token log-probabilities."""
        start = depth * SEGMENT
        rows = [*prefixes, *[prefixes[0]] * (ROWS - len(prefixes))]
        ids = torch.zeros(ROWS, width, dtype=torch.long)
        last = torch.zeros(ROWS, dtype=torch.long)
        for r, prefix in enumerate(rows):
            new = prefix[start:]
            ids[r, :len(new)] = torch.tensor(new)
            last[r] = len(new) - 1
        cache = DynamicCache()
        if depth:  # [ROWS, layers, 2, heads, depth * SEGMENT, dim]
            past = torch.stack([torch.cat([work[prefix[:(j + 1) * SEGMENT]] for j in range(depth)],
                                          dim=3) for prefix in rows]).to(self.device)
            cache = DynamicCache([(past[:, layer, 0], past[:, layer, 1])
                                  for layer in range(past.shape[1])])
        positions = torch.arange(start, start + width).expand(ROWS, width)
        out = self.forward(input_ids=ids.to(self.device), position_ids=positions.to(self.device),
                           past_key_values=cache, use_cache=True,
                           logits_to_keep=last.to(self.device))
        self.computed += sum(len(p) - start for p in prefixes)
        logits = out.logits[torch.arange(ROWS), torch.arange(ROWS)]  # row r at its own last token
        logprobs = torch.log_softmax(logits[:len(prefixes)].double(), dim=-1).cpu().numpy()
        whole = [r for r, p in enumerate(prefixes) if len(p) == start + SEGMENT]  # kept: whole
        layers = out.past_key_values.layers
        kvs: dict[int, torch.Tensor] = {}
        if whole:
            rows_kv = torch.stack([torch.stack([layer.keys[whole, :, start:],
                                                layer.values[whole, :, start:]])
                                   for layer in layers])  # [layers, 2, whole rows, heads, ...]
            kvs = {r: rows_kv[:, :, i].contiguous() for i, r in enumerate(whole)}
        return kvs, logprobs


def _shared_segments(a: tuple[int, ...], b: tuple[int, ...]) -> int:
    """Whole segments two prompts share (a prompt's last segment is always its own)."""
    shared = 0
    while (shared + 1) * SEGMENT < min(len(a), len(b)) and \
            a[shared * SEGMENT:(shared + 1) * SEGMENT] == b[shared * SEGMENT:(shared + 1) * SEGMENT]:
        shared += 1
    return shared
