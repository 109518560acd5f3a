"""The per-query front end does each piece of work once, and changes no byte of a run.

Templates render once per (template, values they mention); a participant records the question
it was asked without rendering it again; the chat template is applied once per query; and the
scenario's `prompt_layout` can put the text shared by a condition before the persona.
"""

from __future__ import annotations

import collections
import contextlib
from collections.abc import Iterator

import pytest

from agents.conversation import question_message
from agents.population import build_population
from engine.backends.chat_template import ChatPrompt
from engine.batcher import Batcher
from engine.cache import CachedBackend, ResponseCache
from engine.model import SurveyModel
from engine.runner import run_scenario
from engine.store import RESPONSES, TRANSCRIPTS
from scenarios import templates
from scenarios.loader import load_scenario
from scenarios.schema import SHARED_FIRST, Scenario
from scenarios.template_memo import MEMO, memo_disabled
from tests.conftest import FLAGSHIP, run_cli


@pytest.fixture
def renders(monkeypatch) -> Iterator[collections.Counter[str]]:
    """Jinja renderings by template source during the test, starting from an empty memo."""
    counts: collections.Counter[str] = collections.Counter()
    real = templates._render

    def counting(source, variables):
        counts[source] += 1
        return real(source, variables)

    monkeypatch.setattr(templates, "_render", counting)
    saved = dict(MEMO.texts)
    MEMO.texts.clear()
    yield counts
    MEMO.texts.clear()
    MEMO.texts.update(saved)


def with_question_text(scenario: Scenario, text: str) -> Scenario:
    """The scenario with every question's text replaced by `text` (a template)."""
    stages = [stage.model_copy(update={"questions": [
        q.model_copy(update={"text": f"{text} ({q.id})"}) for q in stage.questions]})
        for stage in scenario.stages]
    return scenario.model_copy(update={"stages": stages})


def simulate(scenario: Scenario, specs, backend, seed: int = 4) -> SurveyModel:
    model = SurveyModel(scenario, specs, Batcher(backend), seed=seed)
    while model.running:
        model.step()
    return model


def test_each_question_renders_once_per_round_and_condition_it_mentions(
        flagship, tiny_backend, renders):
    scenario = with_question_text(flagship.scenario, "Round {{ round }}, {{ disclosure }}:")
    specs = build_population(flagship, 8, seed=2)
    simulate(scenario, specs, tiny_backend)
    seen = {(r.id, s.condition["disclosure"]) for r in scenario.rounds for s in specs}
    assert len(seen) == 2 * len(scenario.rounds)  # both disclosure levels among 8 twins
    for q in scenario.questions:  # asked 8 x 4 times, recorded 8 x 4 times
        assert renders[q.text] == len(seen)
    conditions = {(s.condition["values"], s.condition["valuations"]) for s in specs}
    assert renders[scenario.instructions] == len(conditions)  # it mentions no demographic
    assert renders[scenario.stimulus] == len(seen)  # round, its `announced`, and disclosure


def test_a_template_is_never_shared_across_values_it_can_see(renders):
    age = "You are {{ age }}."
    assert templates.render(age, {"age": 30}) == "You are 30."
    assert templates.render(age, {"age": 40}) == "You are 40."
    assert templates.render(age, {"age": True}) == "You are True."  # True == 1, yet prints apart
    assert templates.render(age, {"age": 1}) == "You are 1."
    assert templates.render(age, {"age": -0.0}) == "You are -0.0."
    assert templates.render(age, {"age": 0.0}) == "You are 0.0."
    assert templates.render(age, {"age": 30, "other": "x"}) == "You are 30."  # unmentioned: shared
    assert renders[age] == 6
    shadow = "{{ range }}"  # a variable hiding a global is still one the template sees
    assert templates.render(shadow, {"range": "a"}) == "a"
    assert templates.render(shadow, {"range": "b"}) == "b"
    chosen = "{{ [1, 2, 3, 4, 5, 6, 7, 8] | random }}"  # may differ: rendered every time
    for _ in range(3):
        templates.render(chosen, {})
    assert renders[chosen] == 3


def test_a_participant_records_the_question_it_was_asked(flagship, tiny_backend):
    scenario = with_question_text(flagship.scenario, "Round {{ round }}:")
    model = simulate(scenario, build_population(flagship, 3, seed=2), tiny_backend)
    for p in model.participants:
        asked = [line for line in p.transcript if line["role"] == "user"]
        assert len(asked) == len(scenario.rounds) * len(scenario.questions)
        for line in asked:
            q = scenario.question(line["question_id"])
            expected = question_message(scenario, q, line["round"], p.condition)
            assert line["content"] == expected.content


def test_the_chat_template_is_applied_once_per_query(flagship, tiny_backend, tmp_path):
    specs = build_population(flagship, 5, seed=2)
    with ResponseCache(tmp_path / "cache.sqlite") as cache:
        model = SurveyModel(flagship.scenario, specs,
                            Batcher(CachedBackend(tiny_backend, cache)), seed=4)
        before, queries = tiny_backend.chat.applied, 0
        while model.running:
            model.step()
            queries += len(model.last_answers)
    # the cache key and the forward pass read one rendering; nothing is kept after the batch
    assert tiny_backend.chat.applied - before == queries
    assert tiny_backend.chat._texts is None


@contextlib.contextmanager
def nothing_remembered() -> Iterator[None]:
    """Templates and chat prompts rendered afresh every time they are wanted (the old path)."""
    with memo_disabled(), pytest.MonkeyPatch.context() as patch:
        patch.setattr(ChatPrompt, "remembering", lambda self: contextlib.nullcontext())
        yield


def test_a_run_is_byte_identical_to_one_rendering_everything_afresh(flagship, tiny_dir, tmp_path):
    from engine.backends.transformers_backend import TransformersBackend

    # a fresh backend per run: a backend may keep state between calls (computed prefixes)
    run_scenario(flagship, participants=4, seed=3, out=tmp_path / "lean",
                 backend=TransformersBackend(tiny_dir))
    with nothing_remembered():
        run_scenario(flagship, participants=4, seed=3, out=tmp_path / "ref",
                     backend=TransformersBackend(tiny_dir))
    for name in (RESPONSES, TRANSCRIPTS):
        assert (tmp_path / "lean" / name).read_bytes() == (tmp_path / "ref" / name).read_bytes()


def test_shared_first_puts_the_persona_after_the_shared_text(flagship, tiny_backend):
    specs = [s for s in build_population(flagship, 40, seed=2)
             if s.condition == {"disclosure": "specific", "values": "unequal",
                                "valuations": "known"}][:2]
    assert len(specs) == 2 and specs[0].demographics != specs[1].demographics
    layouts = {}
    for layout in ("persona_first", SHARED_FIRST):
        scenario = flagship.scenario.model_copy(update={"prompt_layout": layout})
        model = SurveyModel(scenario, specs, Batcher(tiny_backend), seed=4)
        model.step()
        layouts[layout] = [p.query(scenario.questions[0])[0].content for p in model.participants]
    first, second = layouts[SHARED_FIRST]
    p = model.participants[0]
    shared = f"{p._instructions}\n\n{p._stimulus}\n\n"
    assert first.startswith(shared) and second.startswith(shared)
    assert first == shared + p._persona  # round 1: no memory yet
    old_first, old_second = layouts["persona_first"]
    assert old_first.startswith(p._persona) and old_first.endswith(p._stimulus)
    # what two participants share: all the shared text now, less than the persona's opening before
    assert len(_common_prefix(first, second)) >= len(shared)
    assert len(_common_prefix(old_first, old_second)) < len(p._persona)


def _common_prefix(a: str, b: str) -> str:
    n = next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b)))
    return a[:n]


def test_the_default_layout_is_persona_first(flagship):
    assert flagship.scenario.prompt_layout == "persona_first"


def test_an_unknown_prompt_layout_is_refused_with_exit_2(tmp_path):
    data = FLAGSHIP.parent / "data" / "security_disclosure_synthetic_standin.csv"
    text = FLAGSHIP.read_text(encoding="utf-8").replace(
        "data/security_disclosure_synthetic_standin.csv", str(data))
    text = text.replace("\nrounds:\n", "\nprompt_layout: persona_last\n\nrounds:\n", 1)
    path = tmp_path / "scenario.yaml"
    path.write_text(text, encoding="utf-8")
    result = run_cli("validate", str(path))
    assert result.returncode == 2, result.stderr
    message = result.stdout + result.stderr
    assert "prompt_layout" in message and "persona_first" in message and "shared_first" in message
    assert "Traceback" not in message
    assert load_scenario(FLAGSHIP).scenario.prompt_layout == "persona_first"


class Recording:
    """The real backend, keeping every conversation it is asked about."""

    def __init__(self, inner) -> None:
        self.inner, self.kind, self.asked = inner, inner.kind, []

    def identity(self):
        return self.inner.identity()

    def option_distributions(self, queries):
        self.asked.append([q.messages for q in queries])
        return self.inner.option_distributions(queries)


def test_prompt_ids_from_a_remembered_system_turn_equal_the_whole_texts_ids(
        flagship, tiny_backend, tiny_dir):
    recording = Recording(tiny_backend)
    for layout in ("persona_first", SHARED_FIRST):
        scenario = flagship.scenario.model_copy(update={"prompt_layout": layout})
        simulate(scenario, build_population(flagship, 4, seed=2), recording)
    chat = ChatPrompt(tiny_dir)
    assert chat.prefixes.active  # builtin:tiny: byte-level BPE, no normalizer
    for batch in recording.asked:
        whole = [chat.tokenizer.encode(chat.text(m), add_special_tokens=False) for m in batch]
        assert chat.ids_many(batch) == whole
        assert [chat.ids(m) for m in batch] == whole
    # every question after a round's first reused its system turn's ids
    assert chat.prefixes.reused >= sum(map(len, recording.asked))


def test_a_tokenizer_that_treats_pieces_by_position_is_tokenized_whole():
    from tokenizers import AddedToken, Tokenizer, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    from engine.backends.token_prefix import PrefixIds, boundary_tokens

    def tokenizer(pre, *specials: AddedToken) -> PreTrainedTokenizerFast:
        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre
        tok.train_from_iterator(["hello world, the quick brown fox"] * 20, trainers.BpeTrainer(
            vocab_size=300, show_progress=False,
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
        tok.add_special_tokens(list(specials))
        return PreTrainedTokenizerFast(tokenizer_object=tok)

    end = AddedToken("<|end|>", special=True, normalized=False)
    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False)
    assert boundary_tokens(tokenizer(byte_level, end)) == ("<|end|>",)
    eats_space = AddedToken("<|end|>", special=True, normalized=False, rstrip=True)
    assert boundary_tokens(tokenizer(byte_level, eats_space)) == ()
    # Metaspace adds a space to a text's first piece only: cut there, the rest would get one too
    first_only = tokenizer(pre_tokenizers.Metaspace(prepend_scheme="first"), end)
    text, cut = "hello<|end|>world", len("hello<|end|>")
    whole = first_only.encode(text, add_special_tokens=False)
    pieces = [first_only.encode(t, add_special_tokens=False) for t in (text[:cut], text[cut:])]
    assert pieces[0] + pieces[1] != whole  # why the check exists
    ids = PrefixIds(first_only)
    assert boundary_tokens(first_only) == () and not ids.active
    assert ids.ids(text, "hello") == whole
