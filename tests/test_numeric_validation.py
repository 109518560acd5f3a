"""An unknown field of a question lists the fields of the question's own type, on the YAML line of
the field: a numeric question's include min, max, step and labels; a choice question's do not."""

from __future__ import annotations

from tests.test_question_types import write
from tests.test_scenario_validation import flagship_text, line_of, problems_of
from tests.test_scenario_validation import write as write_flagship

QUESTION_FIELDS = "id, type, text, options, human_column, recall, ordered, coding, missing_codes"


def test_a_misspelt_numeric_field_names_max_among_the_expected_fields(tmp_path):
    path = write(tmp_path)
    text = path.read_text(encoding="utf-8").replace("max: 10", "maxx: 10")
    path.write_text(text, encoding="utf-8")
    found = problems_of(path)
    expected = (f"{path}:{line_of(text, 'maxx: 10')}: stages[0].questions[0].maxx: unknown field; "
                f"did you mean 'max'? expected one of: {QUESTION_FIELDS}, min, max, step, labels")
    assert expected in found, found


def test_a_single_choice_questions_unknown_field_message_is_unchanged(tmp_path):
    raided = "        recall: You raided"
    text = flagship_text().replace(raided, raided + "\n        colour: red")
    path = write_flagship(tmp_path, text)
    found = problems_of(path)
    expected = (f"{path}:{line_of(text, 'colour: red')}: stages[1].questions[0].colour: unknown "
                f"field; expected one of: {QUESTION_FIELDS}")
    assert expected in found, found


def test_a_choice_question_beside_a_numeric_one_lists_only_the_shared_fields(tmp_path):
    path = write(tmp_path)
    text = path.read_text(encoding="utf-8").replace("type: yes_no", "type: yes_no\n        max: 3")
    path.write_text(text, encoding="utf-8")
    found = problems_of(path)
    assert any(f.endswith(f"stages[0].questions[1].max: unknown field; expected one of: "
                          f"{QUESTION_FIELDS}") for f in found), found


def test_an_unknown_type_with_an_unknown_field_lists_the_shared_fields(tmp_path):
    path = write(tmp_path)
    text = path.read_text(encoding="utf-8").replace("type: numeric", "type: slider") \
        .replace("max: 10", "maxx: 10")
    path.write_text(text, encoding="utf-8")
    found = problems_of(path)
    assert any("stages[0].questions[0].type" in f and "(got 'slider')" in f for f in found), found
    assert any(f.endswith(f"stages[0].questions[0].maxx: unknown field; expected one of: "
                          f"{QUESTION_FIELDS}") for f in found), found
