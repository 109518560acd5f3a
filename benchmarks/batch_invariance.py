"""Is a prompt's forward pass the same, bit for bit, whatever else shares its batch?

    python benchmarks/batch_invariance.py [--model builtin:smollm2-135m] [--dtype bfloat16]
                                          [--segment 64] [--rows 8] [--trials 6]

Why: kept prompt prefixes (issue 11) make resumed runs inexact because a prefix's keys and
values (KV) round differently in another batch. If every forward pass had one fixed shape
([rows, segment] new tokens over a past of a whole number of segments, no padding in the past),
a prompt's KV would be a function of its tokens alone, and kept prefixes could be on by default
with resume still exact. This script checks the premise on this machine and what it costs:

1. a prompt scored in batches of different sizes: are its logits and KV bit-equal to batch 1?
2. one fixed shape: the same prompt in different rows beside different companions: bit-equal?
3. seconds per token: batch-1 segments against fixed [rows, segment] batches.

Random token ids stand in for prompts (the arithmetic does not depend on what they say).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch
from transformers import AutoModelForCausalLM, DynamicCache

from engine.tiny_model import ensure_builtin


def segment(model: Any, ids: torch.Tensor, past: list | None) -> tuple[list, torch.Tensor]:
    """One forward pass of `ids` [rows, length] over `past`; the KV per layer and last logits."""
    rows, length = ids.shape
    start = 0 if past is None else past[0][0].shape[2]
    cache = DynamicCache() if past is None else DynamicCache(past)
    positions = torch.arange(start, start + length).expand(rows, length)
    with torch.inference_mode():
        out = model(input_ids=ids, position_ids=positions, past_key_values=cache, use_cache=True,
                    logits_to_keep=1)
    return [(layer.keys, layer.values) for layer in out.past_key_values.layers], out.logits[:, -1]


def scored(model: Any, prompts: torch.Tensor, size: int) -> tuple[list, torch.Tensor]:
    """Score `prompts` [rows, segments*size] segment by segment, all rows in one batch."""
    past = None
    for first in range(0, prompts.shape[1], size):
        past, logits = segment(model, prompts[:, first:first + size], past)
    return past, logits


def variable_batches(model: Any, vocab: int, size: int) -> None:
    """Check 1: each prompt of a batch against itself alone."""
    for rows in (2, 5, 8, 16):
        prompts = torch.randint(0, vocab, (rows, 3 * size))
        past, logits = scored(model, prompts, size)
        equal_logits = equal_kv = 0
        gap = 0.0
        for r in range(rows):
            alone_past, alone = scored(model, prompts[r:r + 1], size)
            equal_logits += torch.equal(logits[r], alone[0])
            equal_kv += all(torch.equal(k[r], a[0]) for (k, _), (a, _) in zip(past, alone_past,
                                                                                strict=True))
            gap = max(gap, float((logits[r] - alone[0]).abs().max()))
        print(f"  batch of {rows:2}: logits bit-equal to batch 1 in {equal_logits}/{rows} rows, "
              f"KV in {equal_kv}/{rows}; largest logit difference {gap:.3g}", flush=True)


def fixed_shape(model: Any, vocab: int, size: int, rows: int, trials: int) -> None:
    """Check 2: one prompt in row `trial % rows` beside new random companions, one shape."""
    target = torch.randint(0, vocab, (2 * size,))
    first: tuple[torch.Tensor, torch.Tensor] | None = None
    same = 0
    for trial in range(trials):
        batch = torch.randint(0, vocab, (rows, 2 * size))
        batch[trial % rows] = target
        past, logits = scored(model, batch, size)
        mine = (torch.cat([k[trial % rows] for k, _ in past]), logits[trial % rows])
        first = first or mine
        same += torch.equal(mine[0], first[0]) and torch.equal(mine[1], first[1])
    print(f"  fixed shape [{rows}, {size}]: the same prompt in {trials} batches (rows "
          f"{', '.join(str(t % rows) for t in range(trials))}): KV and logits bit-equal in "
          f"{same}/{trials}", flush=True)


def cost(model: Any, vocab: int, size: int, rows: int) -> None:
    """Check 3: seconds for `rows` prompts of 3 segments, in one batch and one at a time."""
    prompts = torch.randint(0, vocab, (rows, 3 * size))
    best = {"batched": float("inf"), "batch-1": float("inf")}
    for _ in range(2):
        started = time.perf_counter()
        scored(model, prompts, size)
        best["batched"] = min(best["batched"], time.perf_counter() - started)
        started = time.perf_counter()
        for r in range(rows):
            scored(model, prompts[r:r + 1], size)
        best["batch-1"] = min(best["batch-1"], time.perf_counter() - started)
    tokens = prompts.numel()
    print(f"  {tokens} tokens: fixed [{rows}, {size}] batches {best['batched']:.2f} s, batch 1 "
          f"{best['batch-1']:.2f} s ({best['batch-1'] / best['batched']:.2f}x); load "
          f"{os.getloadavg()[0]:.2f}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--model", default="builtin:smollm2-135m", help="builtin:tiny, "
                        "builtin:smollm2-135m or a local model directory")
    parser.add_argument("--dtype", default="bfloat16", choices=["float32", "bfloat16"])
    parser.add_argument("--segment", type=int, default=64, help="tokens per forward pass row")
    parser.add_argument("--rows", type=int, default=8, help="rows of the fixed shape")
    parser.add_argument("--trials", type=int, default=6)
    args = parser.parse_args()
    torch.manual_seed(0)
    path = ensure_builtin(args.model) if args.model.startswith("builtin:") else Path(args.model)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=getattr(torch, args.dtype)).eval()
    print(f"{args.model}, {args.dtype}, {torch.get_num_threads()} threads, load average "
          f"{os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs", flush=True)
    vocab = model.config.vocab_size
    variable_batches(model, vocab, args.segment)
    fixed_shape(model, vocab, args.segment, args.rows, args.trials)
    cost(model, vocab, args.segment, args.rows)


if __name__ == "__main__":
    main()
