"""Shared-prefix reuse in the transformers backend: prompts are computed in pieces cut where
conversations branch, each distinct piece once, in passes whose shape is a function of the piece;
the distributions are those of scoring every prompt whole, and the bits do not depend on what
else a call holds or what was kept before."""

from __future__ import annotations

import json

import numpy as np
import pytest

from agents.conversation import Message
from engine.backends.base import ChoiceQuery
from engine.backends.segments import MAX_PIECE, SEGMENT, pieces

PERSONA = ("You are a participant in an online decision-making study. You are 39 years old and "
           "your highest education is some college. In this game you are a pirate; an island "
           "has two beaches, each hiding 100 gold coins, and the queen may defend either.")
RAID = ("Which beach do you raid this round?\nA) North Beach\nB) South Beach\n"
        "Answer with the letter of one option.")
BELIEVE = ("Where do you believe the queen has deployed new security?\nA) North only\n"
           "B) South only\nC) Both\nD) Neither\nAnswer with the letter of one option.")


def family(policy: str) -> list[ChoiceQuery]:
    """Prompts that share a long system message, one that extends another whole, a duplicate,
    and prompts that share only the template's first tokens, short and long."""
    system = Message("system", PERSONA)
    believed = (system, Message("user", BELIEVE))
    return [ChoiceQuery(believed, ("A", "B", "C", "D"), policy),
            ChoiceQuery((system, Message("user", RAID)), ("A", "B"), policy),
            ChoiceQuery((*believed, Message("assistant", "C"), Message("user", RAID)), ("A", "B"),
                        policy),
            ChoiceQuery(believed, ("A", "B", "C", "D"), policy),
            ChoiceQuery((Message("system", "Raid?"), Message("user", RAID)), ("B", "A"), policy),
            ChoiceQuery((Message("system", "Queen. " + PERSONA * 3), Message("user", RAID)),
                        ("A", "B"), policy)]


def gap(left: list, right: list) -> float:
    return max(float(np.abs(a.probs - b.probs).max()) for a, b in zip(left, right, strict=True))


def same_bits(left: list, right: list) -> bool:
    return all(np.array_equal(a.probs, b.probs) for a, b in zip(left, right, strict=True))


def piece_tokens(backend, queries: list[ChoiceQuery]) -> int:
    """Real tokens the distinct pieces of these prompts hold (each is computed once)."""
    distinct = {}
    for q in queries:
        prompt = backend.prompt_ids(q.messages)
        for task in pieces(q.policy, tuple(prompt), backend.chat.cuts(q.messages, prompt)):
            distinct[task.key] = task.end - task.start
    return sum(distinct.values())


@pytest.fixture(scope="module")
def backends(tiny_dir, tiny_adapters):
    """builtin:tiny with two LoRA policies, reuse on (keeping recent calls' prompts) and off, in
    float64 and float32."""
    from engine.backends.transformers_backend import TransformersBackend

    return {(dtype, reuse): TransformersBackend(tiny_dir, dtype=dtype, adapters=tiny_adapters,
                                                prefix_reuse=reuse, prefix_cache_mb=64)
            for dtype in ("float64", "float32") for reuse in (True, False)}


QUERIES = [q for policy in ("base", "tuned", "other") for q in family(policy)]


def test_reuse_gives_the_distributions_of_whole_prompts_adapters_on_and_off(backends):
    # float64 makes rounding negligible: what is left is whether the arithmetic is the same.
    reused = backends["float64", True].option_distributions(QUERIES)
    whole = backends["float64", False].option_distributions(QUERIES)
    assert gap(reused, whole) < 1e-12
    # The policies really differ: a prefix computed under one adapter would show.
    assert gap(reused[:6], reused[6:12]) > 1e-3 and gap(reused[6:12], reused[12:]) > 1e-3


def test_in_float32_reuse_stays_within_float32_rounding(backends):
    reused = backends["float32", True].option_distributions(QUERIES)
    whole = backends["float32", False].option_distributions(QUERIES)
    # builtin:tiny's random weights amplify rounding: scoring prompts whole, one at a time
    # instead of batched, already moves a float32 probability by about 1e-6 (float64: 1e-15).
    # That gap itself varies between fresh environments (measured 1.2e-7 to 4.6e-6, at the
    # commit before this scorer too), so only reuse's own gap is held to 1e-5.
    alone = [d for q in QUERIES for d in backends["float32", False].option_distributions([q])]
    assert gap(reused, whole) <= max(1e-6, 4 * gap(alone, whole))
    assert gap(reused, whole) <= 1e-5


def test_a_prompt_that_extends_an_earlier_call_computes_only_its_pieces_past_the_kept_ones(
        tiny_dir, tiny_adapters, backends):
    from engine.backends.transformers_backend import TransformersBackend

    backend = TransformersBackend(tiny_dir, dtype="float64", adapters=tiny_adapters,
                                  prefix_reuse=True, prefix_cache_mb=64)
    first, later = family("tuned")[0], family("tuned")[2]  # later = first + answer + question
    a, b = backend.prompt_ids(first.messages), backend.prompt_ids(later.messages)
    assert b[:len(a)] == a and len(a) > SEGMENT
    backend.option_distributions([first])
    before = backend.prompt_tokens.prompt_computed
    got = backend.option_distributions([later])
    # later is cut where first ends (right after its generation prompt): all of first is kept
    assert len(a) in backend.chat.cuts(later.messages, b)
    assert backend.prompt_tokens.prompt_computed - before == len(b) - len(a)
    assert gap(got, backends["float64", False].option_distributions([later])) < 1e-12


def test_each_piece_is_computed_once_in_a_call_and_reruns_give_the_same_bits(tiny_dir):
    from engine.backends.transformers_backend import TransformersBackend

    backend = TransformersBackend(tiny_dir, prefix_reuse=True, prefix_cache_mb=0,
                                  prefix_spill_mb=0)  # none kept
    queries = [family("base")[i] for i in (0, 1, 4)]
    first = backend.option_distributions(queries)
    prompts = [backend.prompt_ids(q.messages) for q in queries]
    assert prompts[0][:SEGMENT] == prompts[1][:SEGMENT]  # a first-turn piece shared
    for _ in range(2):  # the second call finds nothing kept and computes the same again
        before = backend.prompt_tokens.as_dict()
        again = backend.option_distributions(queries)
        after = backend.prompt_tokens.as_dict()
        assert after["prompt_submitted"] - before["prompt_submitted"] == sum(map(len, prompts))
        assert after["prompt_computed"] - before["prompt_computed"] == piece_tokens(backend,
                                                                                    queries)
        assert same_bits(first, again)


def test_the_bits_do_not_depend_on_the_other_prompts_of_a_call_or_on_what_was_kept(tiny_dir):
    """What makes kept pieces safe for resume: a prompt scored alone by a fresh backend that
    keeps nothing gives the very bits it gets among others, after earlier calls were kept."""
    from engine.backends.transformers_backend import TransformersBackend

    crowd = [ChoiceQuery((Message("system", PERSONA[:n] + " Round 2."), Message("user", q)),
                         labels) for n in range(60, 260, 20)
             for q, labels in ((RAID, ("A", "B")), (BELIEVE, ("A", "B", "C", "D")))]
    queries = family("base")
    keeping = TransformersBackend(tiny_dir, prefix_reuse=True, prefix_cache_mb=64)
    keeping.option_distributions(queries[:3] + crowd[::2])
    among = keeping.option_distributions(crowd[1::2] + queries)[-len(queries):]
    assert keeping.prefix.store.kept and keeping.prefix.store.nbytes <= 64 << 20
    fresh = TransformersBackend(tiny_dir, prefix_reuse=True, prefix_cache_mb=0, prefix_spill_mb=0)
    alone = [d for q in queries for d in fresh.option_distributions([q])]
    assert same_bits(among, alone)
    small = TransformersBackend(tiny_dir, prefix_reuse=True, prefix_cache_mb=1,
                               prefix_spill_mb=0)  # evicts, keeps few
    for part in (crowd, queries, crowd[::-1]):
        evicted = small.option_distributions(part)
    assert same_bits(evicted, keeping.option_distributions(crowd[::-1]))


def test_a_store_that_keeps_nothing_splits_the_work_but_not_the_answers(tiny_dir, backends):
    from engine.backends.transformers_backend import TransformersBackend

    tight = TransformersBackend(tiny_dir, dtype="float64", prefix_reuse=True, prefix_cache_mb=0,
                                prefix_spill_mb=0)
    tight.prefix.chunk_tokens = 256  # chunks of a few prompts each
    many = family("base") + [ChoiceQuery((Message("system", PERSONA[:n]), Message("user", RAID)),
                                         ("A", "B")) for n in range(40, 200, 20)]
    assert gap(tight.option_distributions(many),
               backends["float64", False].option_distributions(many)) < 1e-12


def test_reuse_off_computes_every_prompt_token(backends):
    backend = backends["float32", False]
    assert backend.prefix is None
    before = backend.prompt_tokens.as_dict()
    backend.option_distributions(QUERIES)
    after = backend.prompt_tokens.as_dict()
    submitted = sum(len(backend.prompt_ids(q.messages)) for q in QUERIES)
    assert after["prompt_submitted"] - before["prompt_submitted"] == submitted
    assert after["prompt_computed"] - before["prompt_computed"] == submitted


def test_answer_logits_are_the_same_and_forget_the_kept_prefixes(backends):
    import torch

    on, off = backends["float32", True], backends["float32", False]
    on.option_distributions(QUERIES[:6])
    assert on.prefix.store.kept
    prompts = [on.prompt_ids(q.messages) for q in QUERIES[:6]]
    with torch.no_grad(), on.policy("tuned"), off.policy("tuned"):
        assert torch.equal(on.answer_logits(prompts, keep=2), off.answer_logits(prompts, keep=2))
    assert not on.prefix.store.kept  # training changes weights: nothing computed before may be read
    assert not on.prefix.store.spill.files


def test_the_option_turns_reuse_off(tiny_dir):
    from engine.backends import create_backend

    assert create_backend("transformers", tiny_dir, options={"prefix_reuse": False}).prefix is None
    assert create_backend("transformers", tiny_dir, options={"prefix_reuse": True}).prefix is not None
    # unset, it follows the model's size: builtin:tiny is far too small for reuse to pay
    assert create_backend("transformers", tiny_dir).prefix is None


def test_flagship_computes_at_most_half_its_prompt_tokens_with_the_same_answers(flagship, tmp_path):
    import pandas as pd

    from engine.runner import run_scenario

    tables, tokens = {}, {}
    for reuse in (True, False):  # keeping the belief stage's prompts for the action stage
        out = tmp_path / f"reuse-{reuse}"
        run_scenario(flagship, participants=4, out=out,
                     backend_options={"prefix_reuse": reuse, "prefix_cache_mb": 64})
        tokens[reuse] = json.loads((out / "manifest.json").read_text())["backend"]["tokens"]
        tables[reuse] = pd.read_parquet(out / "responses.parquet")
    assert tokens[True]["prompt_submitted"] == tokens[False]["prompt_submitted"] > 0
    assert tokens[False]["prompt_computed"] == tokens[False]["prompt_submitted"]
    assert tokens[True]["prompt_computed"] <= 0.5 * tokens[True]["prompt_submitted"]
    on, off = tables[True], tables[False]
    assert on["answer"].tolist() == off["answer"].tolist()
    # Probabilities are stored to 6 decimals; float32 rounding on builtin:tiny's random weights
    # moves a probability by up to ~3e-6 whichever way a batch is cut, reuse or not.
    worst = max(np.abs(np.asarray(a) - np.asarray(b)).max()
                for a, b in zip(on["probs"], off["probs"], strict=True))
    assert worst <= 1e-5


def test_a_prompt_is_cut_every_segment_of_its_first_turn_at_each_cut_and_in_long_stretches():
    prompt = tuple(range(2000))
    tasks = pieces("base", prompt, (150, 200, 2000))
    ends = [t.end for t in tasks]
    assert ends == [64, 128, 150, 200, 200 + MAX_PIECE, 200 + 2 * MAX_PIECE, 200 + 3 * MAX_PIECE,
                    2000]
    assert [t.start for t in tasks] == [0, *ends[:-1]]
    assert tasks[3].before == [t.key for t in tasks[:3]] and tasks[3].key[1] == prompt[:200]
    assert tasks[1].shape == (64, 64) and tasks[2].shape == (128, 32) and tasks[3].shape == (192, 64)
    assert tasks[4].shape == (256, MAX_PIECE)
    for bad in ((), (150, 1999), (200, 150, 2000), (0, 2000)):
        with pytest.raises(ValueError, match="cuts"):
            pieces("base", prompt, bad)


def test_cuts_fall_after_the_first_turn_and_each_generation_prompt(backends):
    backend = backends["float32", True]
    believed, _, acted = family("base")[:3]
    first, later = (backend.prompt_ids(q.messages) for q in (believed, acted))
    cuts, later_cuts = backend.chat.cuts(believed.messages, first), backend.chat.cuts(
        acted.messages, later)
    assert backend.chat.generation_ids and len(cuts) == 2 and cuts[-1] == len(first)
    head = backend.tokenizer.decode(first[:cuts[0]])
    assert PERSONA in head and BELIEVE not in head  # the system turn, whole, and no more
    assert set(cuts) <= set(later_cuts) and later_cuts[-1] == len(later) and len(later_cuts) == 3


def test_a_piece_gets_the_same_bits_alone_and_in_a_pass_of_many_rows(tiny_dir):
    """The premise of sharing passes: with every linear layer in fixed blocks, a row's bits do
    not depend on how many rows its pass holds or what they are."""
    import torch

    from engine.backends.transformers_backend import TransformersBackend

    backend = TransformersBackend(tiny_dir, prefix_reuse=True, prefix_cache_mb=0)
    scorer = backend.prefix
    generator = torch.Generator().manual_seed(5)
    prompts = [torch.randint(5, 250, (150,), generator=generator).tolist() for _ in range(6)]
    cuts, labels = [(100, 150)] * 6, [[7, 9]] * 6
    before = scorer.slots
    together = scorer.label_logprobs("base", prompts, cuts, labels)
    assert scorer.slots - before == 6 * (64 + 48 + 64)  # three passes of six rows each
    for prompt, among in zip(prompts, together, strict=True):
        assert np.array_equal(scorer.label_logprobs("base", [prompt], [(100, 150)], [[7, 9]])[0],
                              among)


def test_linear_layers_cut_into_larger_products_give_the_bits_of_64_row_blocks(monkeypatch):
    """Larger products are used only where they round every row as BLOCK-row products do, so a
    row's bits are those of BLOCK-row blocks however many rows its pass holds."""
    import torch
    import torch.nn.functional as F

    from engine.backends import segments
    from engine.backends.segments import BLOCK, SIZES, blocked_linears

    linear, sizes = F.linear, []

    def spy(x, weight, *args):
        if weight is layer.weight:  # not the probes' own products
            sizes.append(len(x))
        return linear(x, weight, *args)

    # 1024-row products said to round otherwise: they must not be used; the rest as probed
    probe, probed = segments._agrees, []

    def agrees(*key):
        probed.append(probe(*key))
        return key[-1] != 1024 and probed[-1]

    monkeypatch.setattr(segments, "_agrees", agrees)
    generator = torch.Generator().manual_seed(3)
    for layer in (torch.nn.Linear(96, 200), torch.nn.Linear(576, 192, bias=False)):
        x = torch.randn(2 * SIZES[0] + 1509, layer.in_features, generator=generator)
        with torch.inference_mode(), blocked_linears(layer):
            monkeypatch.setattr(F, "linear", spy)
            out = layer(x)
            monkeypatch.setattr(F, "linear", linear)
        padded = torch.cat([x, x.new_zeros(-len(x) % BLOCK, x.shape[1])])
        with torch.inference_mode():
            blocks = torch.cat([F.linear(padded[i:i + BLOCK], layer.weight, layer.bias)
                                for i in range(0, len(padded), BLOCK)])[:len(x)]
        assert torch.equal(out, blocks)
        assert "forward" not in vars(layer)  # the swap is undone on exit
    assert 1024 not in sizes and probed
    if all(probed):  # as on the cores measured: every size from 4 rows up rounds as 64 rows do
        # 9701 rows: 4096 twice, 512 twice (never 1024), 256, 128, 64, then 37 rows padded to 64
        assert sizes == 2 * [4096, 4096, 512, 512, 256, 128, 64, 64]
