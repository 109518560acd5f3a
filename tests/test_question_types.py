"""Question types are classes, one file each: every registered type renders, is drawn and reads a
human's value; the numeric type validates, runs end to end and refuses bad ranges and values."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from engine.pilot_schedule import pilot_examples
from engine.runner import run_scenario
from engine.store import RESPONSES
from scenarios.loader import load_scenario
from scenarios.questions import ANSWER_INSTRUCTION, QUESTION_TYPES, Question
from tests.test_scenario_validation import problems_of

SCENARIO = """\
name: numeric_check
title: A numeric question beside a choice question
model: builtin:tiny
seed: 5
population:
  source: twins
  data: answers.csv
  id_column: pid
  demographics: {age: age}
persona: You are {{ age }} years old.
stimulus: Round {{ round }} of a short survey.
rounds:
  - id: 1
  - id: 2
stages:
  - id: belief
    kind: belief
    questions:
      - id: scale
        type: numeric
        text: On a scale of 0 to 10, how safe do you feel?
        min: 0
        max: 10
        HUMAN
      - id: agree
        type: yes_no
        text: Do you agree?
        human_column: "r{round}_agree"
"""
DATA = """\
pid,age,r1_scale,r2_scale,r1_agree,r2_agree
a,30,7.0,7,yes,no
b,41,"7",10,no,no
c,52,0,3,yes,yes
d,63,10,,yes,no
"""


def write(tmp_path: Path, human: str = 'human_column: "r{round}_scale"', data: str = DATA,
          numeric: str = "") -> Path:
    """The scenario (with the numeric question's human line and extra fields) and its data."""
    (tmp_path / "answers.csv").write_text(data, encoding="utf-8")
    text = SCENARIO.replace("HUMAN", human + numeric)
    path = tmp_path / "scenario.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_a_numeric_question_validates_with_one_lettered_option_per_value(tmp_path):
    question = load_scenario(write(tmp_path)).scenario.question("scale")
    assert question.option_ids == [str(v) for v in range(11)]
    assert question.labels[:3] == ["A", "B", "C"] and question.ordered
    assert [o.value for o in question.options] == [float(v) for v in range(11)]
    assert question.render("How safe?").splitlines()[1:3] == ["A) 0", "B) 1"]
    record = load_scenario(write(tmp_path)).scenario.model_dump(mode="json", by_alias=True)
    scale, agree = record["stages"][0]["questions"]
    assert scale["ordered"] is True and scale["options"][7]["value"] == 7.0
    assert agree["ordered"] is False and agree["options"][0]["value"] is None


def test_human_values_7_and_7_0_read_as_the_option_7(tmp_path):
    loaded = load_scenario(write(tmp_path))
    question = loaded.scenario.question("scale")
    assert question.read(7.0) == question.read("7") == question.read("7.0") == 7
    assert question.read(float("nan")) is None and question.read(None) is None
    table = loaded.human.table
    assert [question.read(v) for v in table["r1_scale"]] == [7, 7, 0, 10]


def test_a_numeric_question_runs_end_to_end_and_answers_are_its_values(tmp_path, tiny_backend):
    loaded = load_scenario(write(tmp_path))
    result = run_scenario(loaded, participants=3, out=tmp_path / "run", backend=tiny_backend)
    rows = pd.read_parquet(result.run_dir / RESPONSES)
    scale = rows[rows["question_id"] == "scale"]
    assert len(scale) == 3 * 2 and set(scale["type"]) == {"numeric"}
    assert set(scale["answer"]) <= {str(v) for v in range(11)}
    assert all(list(options) == [str(v) for v in range(11)] for options in scale["options"])


def test_pilot_examples_label_the_humans_number_and_stop_at_a_missing_one(tmp_path):
    loaded = load_scenario(write(tmp_path))
    from agents.population import build_population

    examples = pilot_examples(loaded, build_population(loaded, None, 5, ["a", "d"]))
    scale = [(e.participant_id, e.round_id, e.label) for e in examples if e.question_id == "scale"]
    assert scale == [("a", 1, "H"), ("a", 2, "H"), ("d", 1, "K")]  # d's round 2 is missing
    assert [e.participant_id for e in examples] == ["a"] * 4 + ["d"] * 3  # participant by participant


@pytest.mark.parametrize(("fields", "expected"), [
    ("\n        step: 3", "'max' - 'min' (10) is not a multiple of 'step' (3)"),
    ("\n        step: 0", "greater than or equal to 1"),
    ("\n        labels: roman", "'letters' or 'numbers'"),
])
def test_bad_numeric_fields_are_refused_with_a_clear_message(tmp_path, fields, expected):
    found = problems_of(write(tmp_path, numeric=fields))
    assert any("stages[0].questions[0]" in f and expected in f for f in found), found


@pytest.mark.parametrize(("bounds", "expected"), [
    ("min: 0\n        max: 10", None),
    ("min: 10\n        max: 0", "'min' (10) must be less than 'max' (0)"),
    ("min: 0\n        max: 100", "0 to 100 by 1 is 101 values; a numeric question has at most 26"),
])
def test_a_numeric_range_has_two_to_26_values(tmp_path, bounds, expected):
    path = write(tmp_path)
    path.write_text(path.read_text().replace("min: 0\n        max: 10", bounds), encoding="utf-8")
    if expected is None:
        load_scenario(path)
    else:
        assert any(expected in f for f in problems_of(path)), problems_of(path)


def test_a_numeric_question_takes_no_options_list(tmp_path):
    found = problems_of(write(tmp_path, numeric="\n        options: [{id: a, text: A}]"))
    assert any("options are the numbers from 'min' to 'max'" in f for f in found), found


@pytest.mark.parametrize(("value", "why"), [
    ("11", "is outside 0 to 10"), ("7.5", "is not a whole number"), ("seven", "is not a whole number")])
def test_a_recorded_number_off_the_scale_names_the_csv_line(tmp_path, value, why):
    found = problems_of(write(tmp_path, data=DATA.replace("c,52,0,", f"c,52,{value},")))
    assert any("answers.csv:4:" in f and f"'{value}' {why}" in f for f in found), found


def test_an_unknown_type_lists_the_registered_types(tmp_path):
    path = write(tmp_path)
    path.write_text(path.read_text().replace("type: numeric", "type: slider"), encoding="utf-8")
    found = problems_of(path)
    assert any("stages[0].questions[0].type" in f and "Input should be 'single_choice', 'likert'"
               in f and "'numeric'" in f and "(got 'slider')" in f for f in found), found


def sample_question(kind: type[Question]) -> Question:
    """A valid question of a registered type, from the fields its own schema asks for."""
    name = kind.model_fields["type"].annotation.__args__[0]
    entry = {"id": "q", "type": name, "text": "Which?", "human_column": "r{round}_q"}
    required = {f for f, info in kind.model_fields.items() if info.is_required()}
    entry |= {"min": 1, "max": 5} if {"min", "max"} <= required else {}
    if not kind.DEFAULT_OPTIONS and "min" not in required:
        entry["options"] = [{"id": "one", "text": "One"}, {"id": "two", "text": "Two"}]
    return Question.model_validate(entry)


@pytest.mark.parametrize("name", sorted(QUESTION_TYPES))
def test_every_registered_type_renders_draws_and_reads_a_human_value(name):
    question = sample_question(QUESTION_TYPES[name])
    assert type(question) is QUESTION_TYPES[name] and question.type == name
    message = question.render("Which?")
    assert message.startswith("Which?\n") and all(o.text in message for o in question.options)
    if question.INSTRUCTION == ANSWER_INSTRUCTION:
        assert message.endswith(ANSWER_INSTRUCTION)
    labels = question.query_labels()
    assert len(labels) == len(question.option_ids) >= 2 and len(set(labels)) == len(labels)
    probs = np.zeros(len(labels))
    probs[-1] = 1.0
    assert question.draw(probs, np.random.default_rng(0)) == len(labels) - 1
    for index, option_id in enumerate(question.option_ids):
        assert question.read(option_id) == index
    assert question.read(None) is None
    bad = question.unreadable(pd.Series([question.option_ids[0], None, "no such answer"]))
    assert bad.tolist() == [False, False, True]
    assert "no such answer" in question.unreadable_message("no such answer")


def test_drawing_consumes_the_generator_as_a_plain_choice_does():
    question = sample_question(QUESTION_TYPES["single_choice"])
    probs = np.array([0.3, 0.7])
    ours, plain = np.random.default_rng(9), np.random.default_rng(9)
    assert [question.draw(probs, ours) for _ in range(20)] == \
        [int(plain.choice(2, p=probs)) for _ in range(20)]
    assert ours.random() == plain.random()
