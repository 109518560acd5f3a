"""Messages for a person writing a scenario by hand (issue 14, item 6), on real files through the
real loader: an unquoted YAML boolean gets a hint to quote it, a misspelt field or value a "did
you mean", an unfilled place of `run.py new` is named at its line before what it would trip, and a
tag alone on a template line is warned about (the line break it leaves in the prompt)."""

from __future__ import annotations

import pytest

import run
from engine.scenario_check import load_checked
from scenarios.templates import render
from tests.conftest import FLAGSHIP
from tests.test_scenario_validation import flagship_text, line_of, problems_of, write

QUOTE_HINT = "YAML reads unquoted yes, no, on, off, true and false as booleans; quote it"
COHERENCE_ACTION = "    action: attack\n"


def test_an_unquoted_yes_where_a_text_is_expected_says_to_quote_it(tmp_path):
    text = flagship_text().replace(COHERENCE_ACTION, "    action: yes\n")
    path = write(tmp_path, text)
    assert problems_of(path) == [
        f"{path}:{line_of(text, 'action: yes')}: coherence[0].action: Input should be a valid "
        f"string (got True): {QUOTE_HINT} (\"yes\") to write it as text"]


def test_the_hint_quotes_the_word_as_the_file_wrote_it(tmp_path):
    text = flagship_text().replace("kind: belief", "kind: On")
    path = write(tmp_path, text)
    found = problems_of(path)
    assert found == [f"{path}:{line_of(text, 'kind: On')}: stages[0].kind: Input should be "
                     f"'belief' or 'action' (got True): {QUOTE_HINT} (\"On\") to write it as text"]


def test_a_boolean_key_is_named_at_its_own_line(tmp_path):
    text = flagship_text().replace("    ethnicity: ethnicity", "    no: ethnicity")
    path = write(tmp_path, text)
    found = problems_of(path)
    assert len(found) == 1 and found[0].startswith(f"{path}:{line_of(text, 'no: ethnicity')}: ")
    assert found[0].endswith(f"{QUOTE_HINT} (\"no\") to write it as text"), found


def test_an_option_id_keeps_its_own_hint_once(tmp_path):
    text = flagship_text().replace("{id: north, text: North Beach}", "{id: yes, text: North Beach}")
    found = problems_of(write(tmp_path, text))
    assert sum(f.count("quote it") for f in found) == 1, found


def test_a_quoted_yes_is_text(tmp_path):
    text = flagship_text().replace("{id: north, text: North Beach}", '{id: north, text: "yes"}')
    loaded = load_checked(write(tmp_path, text))
    assert loaded.scenario.question("attack").options[0].text == "yes"


MISSPELT = [  # (what the flagship says, the misspelling, the field it should suggest)
    ("stimulus: |", "stimuls: |", "stimulus"),
    ("  id_column: participant_id", "  id_colum: participant_id", "id_column"),
    ("  holdout: 0.5 ", "  holdot: 0.5 ", "holdout"),
    ("        human_column: \"r{round}_attack\"", "        human_colum: \"r{round}_attack\"",
     "human_column"),
    ("{question: attack, in: [north]}", "{question: attack, inn: [north]}", "in"),
    ("      family: logit", "      famly: logit", "family"),
    ("  - id: belief\n", "  - id: belief\n    kinds: belief\n", "kind"),
    ("training: {epochs: 1,", "training: {epoch: 1,", "epochs"),
    ("{name: ft10, pilot: 0.1, sample: random}", "{name: ft10, pilot: 0.1, smaple: random}", "sample"),
]


@pytest.mark.parametrize(("good", "bad", "meant"), MISSPELT, ids=[m[2] for m in MISSPELT])
def test_a_misspelt_field_gets_did_you_mean_before_the_expected_fields(tmp_path, good, bad, meant):
    text = flagship_text().replace(good, bad, 1)
    assert text != flagship_text(), good
    found = [f for f in problems_of(write(tmp_path, text)) if "unknown field" in f]
    assert len(found) == 1, found
    assert f"unknown field; did you mean '{meant}'? expected one of: " in found[0], found


def test_a_long_form_demographics_misspelt_field_is_suggested(tmp_path):
    text = flagship_text().replace("    age: age", "    age: {colum: age, format: integer}")
    found = problems_of(write(tmp_path, text))
    assert any("population.demographics.age.colum: unknown field; did you mean 'column'? "
               "expected one of: column, labels, bins, format, missing" in f for f in found), found


def test_an_unlike_field_gets_no_guess(tmp_path):
    raided = "        recall: You raided"
    text = flagship_text().replace(raided, raided + "\n        colour: red")
    found = problems_of(write(tmp_path, text))
    assert any("colour: unknown field; expected one of: " in f for f in found), found
    assert not any("did you mean" in f for f in found), found


@pytest.mark.parametrize(("good", "bad", "meant"), [
    ("type: single_choice", "type: single_choise", "single_choice"),
    ("family: mnlogit", "family: mnlogti", "mnlogit"),
    ("kind: action", "kind: actoin", "action"),
])
def test_a_misspelt_value_of_a_fixed_set_gets_did_you_mean(tmp_path, good, bad, meant):
    text = flagship_text().replace(good, bad, 1)
    found = problems_of(write(tmp_path, text))
    assert any(f"(got '{bad.split(': ')[1]}'); did you mean '{meant}'?" in f for f in found), found


def test_unfilled_places_come_first_and_hide_what_they_trip(tmp_path):
    text = (flagship_text()
            .replace("title: Information", 'title: "FILL IN: a one-line title"\nold_title: Info', 1)
            .replace("kind: belief", 'kind: "FILL IN: belief or action"')
            .replace('human_column: "r{round}_attack"', 'human_column: "FILL IN: the column"'))
    path = write(tmp_path, text)
    found = problems_of(path)
    assert found[:3] == [
        f"{path}:{line_of(text, 'a one-line title')}: title: unfilled place: a one-line title",
        f"{path}:{line_of(text, 'belief or action')}: stages[0].kind: unfilled place: belief or "
        "action",
        f"{path}:{line_of(text, 'FILL IN: the column')}: stages[1].questions[0].human_column: "
        "unfilled place: the column"]
    # Only the real mistake follows: the placeholder's own trips (the kind is no belief or
    # action) are not reported again.
    assert len(found) == 4 and "old_title: unknown field" in found[3], found


def test_with_only_places_left_the_whole_file_checks_still_run(tmp_path):
    text = (flagship_text().replace('human_column: "r{round}_attack"',
                                    'human_column: "FILL IN: the column"')
            .replace("Round {{ round }} of", "Round {{ rund }} of"))
    path = write(tmp_path, text)
    found = problems_of(path)
    assert found[0].endswith("human_column: unfilled place: the column"), found
    assert len(found) == 2 and "unknown variable(s) rund" in found[1], found


TAG_LINE_STIMULUS = """stimulus: |
  Round {{ round }} of {{ n_rounds }}.
  {% if disclosure == "specific" %}
  The queen names {{ announced }} Beach.
  {% endif %}
  Decide."""


def stimulus_replaced(stimulus: str) -> str:
    text = flagship_text()
    start = text.index("stimulus: |")
    return text[:start] + stimulus + text[text.index("\n\nrounds:"):]


def test_a_tag_alone_on_its_line_leaves_an_empty_line_and_validate_warns(tmp_path):
    text = stimulus_replaced(TAG_LINE_STIMULUS)
    loaded = load_checked(write(tmp_path, text))
    # What rendering does (unchanged; docs/scenario-format.md): both line breaks stay.
    shown = render(loaded.scenario.stimulus, {"round": 1, "n_rounds": 4, "disclosure": "specific",
                                              "announced": "North"})
    assert shown == "Round 1 of 4.\n\nThe queen names North Beach.\n\nDecide."
    assert [(w.line, w.field) for w in loaded.warnings if "stands alone" in w.message] == [
        (line_of(text, '{% if disclosure'), "stimulus"),
        (text.splitlines().index("  {% endif %}") + 1, "stimulus")]


def test_a_trimmed_tag_line_renders_without_the_empty_line_and_is_not_warned(tmp_path):
    text = stimulus_replaced(TAG_LINE_STIMULUS.replace("{% if", "{%- if")
                             .replace("{% endif", "{%- endif"))
    loaded = load_checked(write(tmp_path, text))
    shown = render(loaded.scenario.stimulus, {"round": 1, "n_rounds": 4, "disclosure": "vague",
                                              "announced": "North"})
    assert shown == "Round 1 of 4.\nDecide."
    assert not [w for w in loaded.warnings if "stands alone" in w.message]


def test_validate_prints_the_warning_and_exits_0(tmp_path, capsys):
    path = write(tmp_path, stimulus_replaced(TAG_LINE_STIMULUS))
    assert run.main(["validate", str(path)]) == 0
    err = capsys.readouterr().err
    assert f"warning: {path}:" in err and "stands alone on its line" in err, err


def test_the_flagship_has_no_tag_line_warning():
    assert not [w for w in load_checked(FLAGSHIP).warnings if "stands alone" in w.message]
