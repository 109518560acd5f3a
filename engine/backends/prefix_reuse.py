"""Shared-prefix reuse for the transformers backend: each distinct token prefix is computed once.

Why: a participant's questions in one stage share their whole system message (persona,
instructions, stimulus, memory of earlier rounds), and a stage's prompts extend the prompts of
the stage before (the belief answers come before the action question). A call's prompts are
scored as a radix tree over their token ids: every shared prefix of at least `MIN_SHARED` tokens
is one node, computed once, and its keys and values (KV) are the past of every prompt below it.
With `cache_bytes` > 0 the KV of recent calls' prompts is kept too, so a prompt that extends an
earlier one computes only its new tokens. That is off by default: a kept prefix was computed in
another batch, so its float rounding differs from a recomputed one, and a resumed run (which
finds nothing kept) or a second run on the same backend would then differ from the first in the
last bits. Within one call the tree depends only on the call's prompts: reruns are bit-identical.

Exact: a token's keys and values depend only on the tokens before it and on its position.
Every row is scored with an attention mask over [past | new tokens] and explicit position ids
that count real tokens only, so it scores as if alone; in float32 the distributions equal a
plain forward pass over the whole prompt to float rounding (about 1e-7).

Memory: the KV of one chunk of prompts (at most a quarter of `cache_bytes`) while it is
computed, plus the kept KV (at most `cache_bytes`); a forward pass holds at most
`token_budget` new tokens, a past token counted as PAST_WEIGHT of one.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from transformers import DynamicCache

# A shared prefix shorter than this is recomputed by each prompt below it: a tree level costs a
# forward pass and a copy of the past, which a few tokens do not pay for.
MIN_SHARED = 16
# A past token in a forward pass holds only its keys and values (2 x kv heads x head dim per
# layer), about a quarter of what a computed token's activations hold; counting it as a
# quarter lets a batch of short continuations be wide (a forward pass has a fixed cost).
PAST_WEIGHT = 0.25


def common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    """Length of the longest common prefix of two token lists (slice comparisons run in C)."""
    low, high = 0, min(len(a), len(b))
    if a[:high] == b[:high]:
        return high
    while low < high:  # invariant: a[:low] == b[:low] and a[:high+1] != b[:high+1]
        mid = (low + high + 1) // 2
        if a[:mid] == b[:mid]:
            low = mid
        else:
            high = mid - 1
    return low


@dataclass(eq=False)
class Node:
    """A prefix of the prompts below it: the first `depth` tokens of `prompt`."""

    prompt: list[int]
    depth: int
    leaf: int | None = None  # index of the prompt that ends here
    children: list[Node] = field(default_factory=list)
    past: Node | Entry | None = None  # whose KV[:past_len] this node reads instead of computing
    past_len: int = 0
    level: int = 0  # forward passes before this node can be computed
    positions: torch.Tensor | None = None  # pool slots of tokens [0, depth), once computed


class Chunk:
    """The KV of one chunk of computed prompts: per layer, keys and values [tokens, heads, dim].

    The tensors are allocated once for the chunk's whole tree (`capacity` tokens, known from its
    plan) at the first append, so adding a batch's tokens copies only those tokens."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.keys: list[torch.Tensor] = []
        self.values: list[torch.Tensor] = []
        self.entries: list[Entry] = []
        self.tokens = 0

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in (*self.keys, *self.values))

    def append(self, keys: list[torch.Tensor], values: list[torch.Tensor]) -> torch.Tensor:
        """Add tokens' KV ([tokens, heads, dim] per layer) at the end; their slots."""
        if not self.keys:
            self.keys = [k.new_empty(self.capacity, *k.shape[1:]) for k in keys]
            self.values = [v.new_empty(self.capacity, *v.shape[1:]) for v in values]
        start, self.tokens = self.tokens, self.tokens + keys[0].shape[0]
        for stored, new in zip((*self.keys, *self.values), (*keys, *values), strict=True):
            stored[start:self.tokens] = new
        return torch.arange(start, self.tokens)


@dataclass(eq=False)
class Entry:
    """A computed prompt whose KV is kept: its tokens and its slots in its chunk."""

    key: tuple[int, ...]
    chunk: Chunk
    positions: torch.Tensor


class KeptPrefixes:
    """The KV of recent prompts of one policy, looked up by longest common token prefix."""

    def __init__(self) -> None:
        self.chunks: list[Chunk] = []
        self._keys: list[tuple[int, ...]] = []
        self._entries: list[Entry] = []

    @property
    def nbytes(self) -> int:
        return sum(c.nbytes for c in self.chunks)

    def _index(self) -> None:
        pairs = sorted(((e.key, e) for c in self.chunks for e in c.entries), key=lambda p: p[0])
        self._keys, self._entries = [k for k, _ in pairs], [e for _, e in pairs]

    def best(self, tokens: list[int]) -> tuple[Entry | None, int]:
        """The kept prompt sharing the longest prefix with `tokens`, and that length.

        In sorted order the longest common prefix is found next to where `tokens` would go."""
        wanted = tuple(tokens)
        at = bisect.bisect_left(self._keys, wanted)
        best: tuple[Entry | None, int] = (None, 0)
        for i in (at - 1, at):
            if 0 <= i < len(self._keys):
                shared = common_prefix(self._keys[i], wanted)
                if shared > best[1]:
                    best = (self._entries[i], shared)
        return best

    def keep(self, chunk: Chunk, budget: int, passed: tuple[int, ...]) -> None:
        """Keep `chunk` within `budget` bytes: first drop kept chunks that sort wholly before
        `passed` (a sweep in sorted order will not ask for them again), else keep it not."""
        size = chunk.nbytes
        if size > budget:
            return
        for old in sorted(self.chunks, key=lambda c: max(e.key for e in c.entries)):
            if self.nbytes + size <= budget:
                break
            if max(e.key for e in old.entries) < passed:
                self.chunks.remove(old)
        if self.nbytes + size <= budget:
            self.chunks.append(chunk)
        self._index()

    def clear(self) -> None:
        self.chunks.clear()
        self._index()


def build_tree(prompts: list[list[int]]) -> Node:
    """The radix tree of sorted, distinct prompts: a node wherever two of them part ways."""
    root = Node([], 0)
    stack = [root]
    previous: list[int] | None = None
    for i, prompt in enumerate(prompts):
        if previous is not None:
            shared = common_prefix(previous, prompt)
            last = None
            while stack[-1].depth > shared:
                last = stack.pop()
            if stack[-1].depth < shared and last is not None:  # split the edge to `last`
                inner = Node(prompt, shared, children=[last])
                stack[-1].children[-1] = inner
                stack.append(inner)
        leaf = Node(prompt, len(prompt), leaf=i)
        stack[-1].children.append(leaf)
        stack.append(leaf)
        previous = prompt
    return root


def plan(root: Node, kept: KeptPrefixes) -> list[Node]:
    """The nodes worth computing, each with its past (a kept prompt or its parent) and level.

    An inner node shorter than MIN_SHARED beyond its computed parent is folded into its
    children. Every prompt computes at least its last token: that is where it is scored."""
    nodes: list[Node] = []
    todo: list[tuple[Node, Node]] = [(child, root) for child in reversed(root.children)]
    while todo:
        node, parent = todo.pop()
        if node.leaf is None and node.depth - parent.depth < MIN_SHARED:
            todo.extend((child, parent) for child in reversed(node.children))
            continue
        entry, shared = kept.best(node.prompt[:node.depth])
        shared = min(shared, node.depth - (node.leaf is not None))
        if entry is not None and shared > parent.depth:
            node.past, node.past_len, node.level = entry, shared, 1
        else:
            node.past, node.past_len = (parent if parent.depth else None), parent.depth
            node.level = parent.level + 1
        if node.past_len == node.depth:  # an inner node a kept prompt covers: nothing to compute
            node.level -= 1
        nodes.append(node)
        todo.extend((child, node) for child in reversed(node.children))
    return nodes


def capacity(nodes: list[Node]) -> int:
    """Tokens a chunk holds for this plan: what its nodes compute, and the kept KV they read."""
    computed = sum(n.depth - n.past_len for n in nodes)
    seeds: dict[int, int] = {}
    for node in nodes:
        if isinstance(node.past, Entry):
            seeds[id(node.past)] = max(seeds.get(id(node.past), 0), node.past_len)
    return computed + sum(seeds.values())


class PrefixScorer:
    """Scores prompts of one policy at a time as a tree, reusing shared and kept prefixes."""

    def __init__(self, forward: Callable[..., Any], *, token_budget: int, cache_bytes: int,
                 token_bytes: int, device: str) -> None:
        self.forward, self.token_budget, self.device = forward, token_budget, device
        self.cache_bytes, self.token_bytes = cache_bytes, max(token_bytes, 1)
        self.kept: dict[str, KeptPrefixes] = {}
        self.computed = 0  # real prompt tokens run through the model

    def forget(self) -> None:
        """Drop every kept prefix (the weights are about to change)."""
        self.kept.clear()

    def label_logprobs(self, policy: str, prompts: list[list[int]],
                       labels: list[list[int]]) -> list[np.ndarray]:
        """For each prompt, the log-probabilities of its label tokens at its answer position."""
        distinct = sorted({tuple(p) for p in prompts})
        row = {p: i for i, p in enumerate(distinct)}
        wanted: list[set[int]] = [set() for _ in distinct]
        for prompt, ids in zip(prompts, labels, strict=True):
            wanted[row[tuple(prompt)]].update(ids)
        found: list[dict[int, float]] = [{} for _ in distinct]
        kept = self.kept.setdefault(policy, KeptPrefixes())
        for first, last in self._chunks([list(p) for p in distinct]):
            nodes = plan(build_tree([list(p) for p in distinct[first:last]]), kept)
            chunk = Chunk(capacity(nodes))
            self._seed(chunk, nodes)
            for level in range(1, max((n.level for n in nodes), default=0) + 1):
                for batch in self._batches([n for n in nodes if n.level == level]):
                    for node, logprobs in zip(batch, self._run(chunk, batch), strict=True):
                        if node.leaf is not None:
                            i = first + node.leaf
                            found[i] = {t: float(logprobs[t]) for t in wanted[i]}
            chunk.entries = [Entry(tuple(n.prompt), chunk, n.positions) for n in nodes
                             if n.leaf is not None]
            others = sum(k.nbytes for name, k in self.kept.items() if name != policy)
            kept.keep(chunk, self.cache_bytes - others, distinct[first])  # one budget for all
        return [np.array([found[row[tuple(p)]][t] for t in ids])
                for p, ids in zip(prompts, labels, strict=True)]

    def _chunks(self, distinct: list[list[int]]) -> list[tuple[int, int]]:
        """Runs of sorted prompts whose tree holds at most a quarter of the kept budget (at least
        two forward passes' worth)."""
        limit = max(self.cache_bytes // 4 // self.token_bytes, 2 * self.token_budget)
        spans, first, tokens = [], 0, 0
        for i, prompt in enumerate(distinct):
            new = len(prompt) - (common_prefix(distinct[i - 1], prompt) if i > first else 0)
            if i > first and tokens + new > limit:
                spans.append((first, i))
                first, new, tokens = i, len(prompt), 0
            tokens += new
        return [*spans, (first, len(distinct))]

    def _seed(self, chunk: Chunk, nodes: list[Node]) -> None:
        """Copy the kept KV the nodes read into this chunk, so a chunk never points elsewhere."""
        need: dict[int, tuple[Entry, int]] = {}
        for node in nodes:
            if isinstance(node.past, Entry):
                entry, longest = need.get(id(node.past), (node.past, 0))
                need[id(node.past)] = (entry, max(longest, node.past_len))
        slots: dict[int, torch.Tensor] = {}
        for key, (entry, length) in need.items():
            take = entry.positions[:length].to(entry.chunk.keys[0].device)
            slots[key] = chunk.append([k[take] for k in entry.chunk.keys],
                                      [v[take] for v in entry.chunk.values])
        for node in nodes:
            if isinstance(node.past, Entry):
                node.past = Node(list(node.past.key), node.past_len,
                                 positions=slots[id(node.past)][:node.past_len])
            if node.past is not None and node.past_len == node.depth:  # covered by its past
                node.positions = node.past.positions[:node.depth]

    def _batches(self, nodes: list[Node]) -> list[list[Node]]:
        """Nodes of one level in forward passes of at most token_budget tokens, a past token
        counted as PAST_WEIGHT of one (it holds keys and values, not a layer's activations)."""
        nodes = sorted(nodes, key=lambda n: (n.past_len, n.depth - n.past_len))
        batches: list[list[Node]] = []
        current: list[Node] = []
        past = new = 0
        for node in nodes:
            past_if, new_if = max(past, node.past_len), max(new, node.depth - node.past_len)
            if current and (past_if * PAST_WEIGHT + new_if) * (len(current) + 1) > self.token_budget:
                batches.append(current)
                current, past_if, new_if = [], node.past_len, node.depth - node.past_len
            current.append(node)
            past, new = past_if, new_if
        return [*batches, current] if current else batches

    @torch.inference_mode()
    def _run(self, chunk: Chunk, batch: list[Node]) -> list[np.ndarray]:
        """One forward pass over the batch's new tokens against their pasts; keeps their KV."""
        past_width = max(n.past_len for n in batch)
        new_width = max(n.depth - n.past_len for n in batch)
        rows = len(batch)
        ids = torch.zeros(rows, new_width, dtype=torch.long)
        new_mask = torch.zeros(rows, new_width, dtype=torch.long)
        slots = torch.zeros(rows, past_width, dtype=torch.long)
        past_mask = torch.zeros(rows, past_width, dtype=torch.long)
        for r, node in enumerate(batch):  # left padded: every row's answer position is the last
            new = node.prompt[node.past_len:node.depth]
            ids[r, new_width - len(new):] = torch.tensor(new)
            new_mask[r, new_width - len(new):] = 1
            if node.past_len:
                slots[r, past_width - node.past_len:] = node.past.positions[:node.past_len]
                past_mask[r, past_width - node.past_len:] = 1
        # Positions count real tokens only, past included, so a padded row scores as if alone.
        positions = (past_mask.sum(-1, keepdim=True) + new_mask.cumsum(-1) - 1).clamp(min=0)
        cache = DynamicCache()
        if past_width:  # every row's past gathered from the chunk: [rows, heads, past, dim]
            flat = slots.view(-1).to(chunk.keys[0].device)
            cache = DynamicCache([(k[flat].view(rows, past_width, *k.shape[1:]).transpose(1, 2),
                                   v[flat].view(rows, past_width, *v.shape[1:]).transpose(1, 2))
                                  for k, v in zip(chunk.keys, chunk.values, strict=True)])
        mask = torch.cat([past_mask, new_mask], dim=-1)
        out = self.forward(input_ids=ids.to(self.device), attention_mask=mask.to(self.device),
                           position_ids=positions.to(self.device), past_key_values=cache,
                           use_cache=True, logits_to_keep=1)
        layers = out.past_key_values.layers
        real = new_mask.bool().to(layers[0].keys.device)
        start = chunk.append([layer.keys[:, :, past_width:].transpose(1, 2)[real] for layer in layers],
                             [layer.values[:, :, past_width:].transpose(1, 2)[real]
                              for layer in layers])
        counts = new_mask.sum(-1).tolist()
        self.computed += sum(counts)
        offset = 0
        for r, node in enumerate(batch):
            mine = start[offset:offset + counts[r]]
            offset += counts[r]
            past = node.past.positions[:node.past_len] if node.past_len else mine[:0]
            node.positions = torch.cat([past, mine])
        return list(torch.log_softmax(out.logits[:, -1, :].double(), dim=-1).cpu().numpy())
