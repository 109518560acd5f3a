"""`run.py preview`: the messages, options and labels it shows are exactly what the backend
receives in a real run (builtin:tiny, a few participants, every round), without any model."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
import pytest

import run
from engine.backends.base import BackendWrapper, ChoiceQuery, Distribution
from engine.preview import ASSUMED, RECORDED, build_preview
from scenarios.loader import load_scenario
from tests.conftest import FLAGSHIP, ROOT

PEERS = ROOT / "scenarios" / "peers_survey.yaml"
PARTICIPANTS = 3


class RecordingBackend(BackendWrapper):
    """The real backend, keeping every query it is sent."""

    def __init__(self, inner) -> None:
        super().__init__(inner)
        self.received: list[ChoiceQuery] = []

    def option_distributions(self, queries: Sequence[ChoiceQuery]) -> list[Distribution]:
        self.received += list(queries)
        return self.inner.option_distributions(queries)


def real_run(loaded, backend, out: Path) -> tuple[list[ChoiceQuery], pd.DataFrame]:
    """A run of PARTICIPANTS twins on builtin:tiny: what its backend received, and its answers."""
    from engine.runner import run_scenario

    recording = RecordingBackend(backend)
    result = run_scenario(loaded, participants=PARTICIPANTS, out=out, backend=recording)
    return recording.received, pd.read_parquet(result.run_dir / "responses.parquet")


def drawn(responses: pd.DataFrame, participant: str) -> dict[tuple[int, str], str]:
    """The answers one twin drew in the run, by (round, question)."""
    mine = responses[responses["participant_id"] == participant]
    return {(int(r), str(q)): str(a) for r, q, a in zip(mine["round"], mine["question_id"],
                                                         mine["answer"], strict=True)}


def previewed(loaded, participant: str, round_id: int, answers, participants=None) -> list:
    preview = build_preview(loaded, participant=participant, round_id=round_id, answers=answers,
                            participants=participants)
    return [ChoiceQuery(q.messages, q.labels, q.policy) for q in preview.queries]


@pytest.mark.parametrize("scenario", [FLAGSHIP, PEERS], ids=["twins", "marginals"])
def test_preview_equals_what_the_backend_receives_in_every_round(scenario, tiny_backend,
                                                                   tmp_path):
    loaded = load_scenario(scenario)
    received, responses = real_run(loaded, tiny_backend, tmp_path / "run")
    participants = list(dict.fromkeys(responses["participant_id"]))
    assert len(participants) == PARTICIPANTS
    size = None if loaded.scenario.population.source == "twins" else PARTICIPANTS
    shown: list[ChoiceQuery] = []
    for participant in participants:
        for r in loaded.scenario.rounds:
            queries = previewed(loaded, participant, r.id, drawn(responses, participant), size)
            assert queries and all(q in received for q in queries), (participant, r.id)
            shown += queries
    assert Counter(shown) == Counter(received)  # every query of the run, and nothing else
    # The first page of round 1 holds no answer yet: the preview's own memory does not matter.
    first = loaded.scenario.stages[0].id
    alone = build_preview(loaded, participant=participants[-1], participants=size)
    page = [ChoiceQuery(q.messages, q.labels, q.policy) for q in alone.queries
            if q.stage.id == first]
    assert len(page) == len(loaded.scenario.stages[0].questions)
    assert all(q in received for q in page)


def test_a_later_round_remembers_the_twins_recorded_answers(flagship):
    table = flagship.human.table
    preview = build_preview(flagship, participant=str(table["participant_id"].iloc[0]),
                            round_id=2)
    assert {r.source for r in preview.remembered} == {RECORDED}
    first = {r.question_id: r.option_id for r in preview.remembered if r.round_id == 1}
    assert first == {q.id: str(table[f"r1_{q.id}"].iloc[0]) for q in flagship.scenario.questions}
    system = preview.queries[0].messages[0].content
    assert "What happened in earlier rounds:" in system


def test_a_marginal_population_says_its_memory_is_assumed():
    loaded = load_scenario(PEERS)
    preview = build_preview(loaded, participants=2)
    assert preview.remembered == []  # one round, one stage: nothing to remember
    assert ASSUMED != RECORDED


def test_preview_prints_each_message_verbatim_and_the_token_counts(capsys):
    # --model alone: the scenario's own model (the flagship's is builtin:tiny)
    code = run.main(["preview", str(FLAGSHIP), "--participant", "P002", "--round", "3", "--model"])
    printed = capsys.readouterr().out
    assert code == 0
    preview = build_preview(load_scenario(FLAGSHIP), participant="P002", round_id=3)
    for query in preview.queries:
        for message in query.messages:
            if message.role != "system" or query is preview.queries[0]:
                assert message.content in printed
    from engine.backends.chat_template import ChatPrompt
    from engine.tiny_model import ensure_builtin

    chat = ChatPrompt(ensure_builtin("builtin:tiny"))
    for query in preview.queries:
        assert f"{len(chat.ids(query.messages)):,} prompt tokens" in printed
    assert "the twin's recorded human answer" in printed


def test_preview_refuses_an_unknown_participant_round_or_policy(capsys):
    for args, field in ((["--participant", "P0001"], "--participant"), (["--round", "9"], "--round"),
                        (["--policy", "nope"], "--policies")):
        code = run.main(["preview", str(FLAGSHIP), *args])
        err = capsys.readouterr().err
        assert code == 2 and field in err and "Traceback" not in err, err
    code = run.main(["preview", str(FLAGSHIP), "--participant", "P0001"])
    assert "did you mean" in capsys.readouterr().err
