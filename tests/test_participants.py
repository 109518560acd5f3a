"""Populations, condition assignment, and what a participant is shown."""

from __future__ import annotations

import collections

import numpy as np
import pytest

from agents.conversation import Message
from agents.participant import Participant
from agents.population import ParticipantSpec, assign_conditions, build_population
from engine.model import SurveyModel
from scenarios.errors import InputError
from scenarios.loader import load_scenario
from tests.conftest import without_study


def test_balanced_assignment_fills_every_cell_within_one():
    factors = {"disclosure": ["specific", "vague"], "values": ["equal", "unequal"],
               "valuations": ["known", "unknown"]}
    cells = assign_conditions(factors, 929, seed=5)
    counts = collections.Counter(tuple(c.values()) for c in cells)
    assert len(counts) == 8 and max(counts.values()) - min(counts.values()) <= 1
    assert cells == assign_conditions(factors, 929, seed=5)
    assert cells != assign_conditions(factors, 929, seed=6)


def test_twins_default_to_one_per_human_row(flagship):
    specs = build_population(flagship, None, seed=1)
    assert [s.participant_id for s in specs] == list(flagship.human.table["participant_id"])


def test_a_subset_of_twins_is_seeded(flagship):
    a = build_population(flagship, 50, seed=1)
    assert [s.participant_id for s in a] == [s.participant_id for s in build_population(flagship, 50, 1)]
    assert len({s.participant_id for s in a}) == 50


def test_asking_for_more_twins_than_rows_is_a_clear_error(flagship):
    with pytest.raises(InputError, match="929 rows"):
        build_population(flagship, 5000, seed=1)


def test_marginal_populations_follow_the_declared_shares(tmp_path, flagship):
    text = without_study(flagship.path.read_text(encoding="utf-8"))
    start, end = text.index("population:\n"), text.index("conditions:\n")
    text = text[:start] + (
        "population:\n  source: marginals\n  size: 800\n  marginals:\n"
        "    ethnicity: {White: 0.75, Black: 0.25}\n    age: {'30': 0.5, '60': 0.5}\n"
        "    gender: {Female: 1.0}\n    education: {Some college: 1.0}\n\n") + text[end:]
    for name in ("disclosure", "values", "valuations"):
        text = text.replace(f"    column: {name}\n", "").replace("    column: value_structure\n", "")
        text = text.replace("    column: valuation_known\n", "")
    text = text.replace("        human_column:", "        # human_column:")
    path = tmp_path / "marginal.yaml"
    path.write_text(text, encoding="utf-8")
    specs = build_population(load_scenario(path), None, seed=2)
    assert len(specs) == 800
    share = np.mean([s.demographics["ethnicity"] == "White" for s in specs])
    assert abs(share - 0.75) < 0.05
    counts = collections.Counter(tuple(s.condition.values()) for s in specs)
    assert len(counts) == 8 and max(counts.values()) - min(counts.values()) <= 1


def _model(flagship, batcher=None) -> SurveyModel:
    spec = ParticipantSpec("P1", {"ethnicity": "Asian", "age": 33, "gender": "Female",
                                  "education": "Graduate degree"},
                           {"disclosure": "specific", "values": "unequal", "valuations": "known"})
    return SurveyModel(flagship.scenario, [spec], batcher, seed=1)


def test_questions_on_one_page_do_not_see_each_others_answers(flagship, tiny_backend):
    from engine.batcher import Batcher

    seen = []

    class Recording:
        kind = "recording"

        def option_distributions(self, queries):
            seen.extend(queries)
            return tiny_backend.option_distributions(queries)

    model = _model(flagship, Batcher(Recording()))
    model.step()  # round 1, belief page: both questions asked from the same context
    location, truth = seen
    assert len(location.messages) == len(truth.messages) == 2  # system + the question itself
    assert location.messages[0] == truth.messages[0]
    model.step()  # round 1, action: sees both beliefs
    assert [m.role for m in seen[2].messages] == ["system", "user", "assistant", "user",
                                                  "assistant", "user"]


def test_the_action_sees_the_beliefs_and_later_rounds_remember_them(flagship):
    model = _model(flagship)
    p: Participant = model.participants[0]
    belief, action = flagship.scenario.stages
    p.begin_round(1)
    p.receive("belief", belief.questions[0], np.array([0, 1.0, 0, 0]), 0.5)
    p.receive("belief", belief.questions[1], np.array([0, 0, 0, 0, 1.0]), 0.5)
    query = p.query(action.questions[0])
    assert [m.role for m in query] == ["system", "user", "assistant", "user", "assistant", "user"]
    assert query[2] == Message("assistant", "B") and query[4] == Message("assistant", "E")
    p.receive("action", action.questions[0], np.array([1.0, 0]), 0.5)
    p.begin_round(2)
    system = p.query(belief.questions[0])[0].content
    assert "You believed the new security was: At South Beach only." in system
    assert "You raided: North Beach." in system
    assert "deployed at South Beach" in system  # round 2 announces South
    assert "33 years old" in system and "Asian" in system
