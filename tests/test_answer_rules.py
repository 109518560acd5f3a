"""Coherence rules over several answers (contracts/answer_rules.py): evaluated on the real Chile
survey, checked against the scenario's questions, and refused when they reach for code."""

from __future__ import annotations

import numpy as np
import pytest

from analysis.metrics.coherence import contradictions
from contracts.answer_rules import Answers, RuleError, check_rule, evaluate
from tests.h1_chile import chile_table, experiment, human_sample

PLACEMENTS = {"self_lr": ["1", "2", "3", "4", "5"], "a_lr": ["1", "2", "3", "4", "5"],
              "b_lr": ["1", "2", "3", "4", "5"], "vote": ["A", "B"]}


def test_a_rule_over_two_beliefs_and_an_action() -> None:
    rule = check_rule("vote == 'A' and abs(value(self_lr) - value(a_lr)) > "
                      "abs(value(self_lr) - value(b_lr))", PLACEMENTS, {"self_lr", "a_lr", "b_lr"})
    ids = {"self_lr": np.array(["1", "5", "3", None], object),
           "a_lr": np.array(["5", "4", "1", "1"], object),
           "b_lr": np.array(["2", "1", "3", "1"], object),
           "vote": np.array(["A", "A", "B", "A"], object)}
    values = {k: np.array([np.nan if v is None else float(v) for v in a]) for k, a in ids.items()
              if k != "vote"}
    result = evaluate(rule, Answers(ids, PLACEMENTS, values))
    # row 0: |1-5| > |1-2| and A; row 1: |5-4| < |5-1|; row 2 votes B; row 3 self missing
    assert result.tolist() == [True, False, False, False]
    assert rule.names == {"vote", "self_lr", "a_lr", "b_lr"}


def test_chile_rules_count_what_pandas_counts_on_the_real_data() -> None:
    table = chile_table()
    exp = experiment()
    sample = human_sample(exp, table)
    rules = [r for r in exp.coherence if r.name == "yes_while_opposing"]
    contra, valid = contradictions(sample, exp, rules)
    both = table["vote"].notna() & table["statusquo_bin"].notna()
    expected = both & (table["vote"] == "Y") & table["statusquo_bin"].isin([-2.0, -1.0])
    assert int(valid.sum()) == int(both.sum())
    assert int(contra.sum()) == int(expected.sum()) > 0
    assert rules[0].label == "yes_while_opposing"


def test_numbers_name_options_by_the_option_id_rule() -> None:
    options = {"scale": ["-2", "-1", "0"], "vote": ["Y", "N"]}
    rule = check_rule("vote == 'Y' and scale in (-2, '-1.0')", options)
    ids = {"scale": np.array(["-2", "-1", "0"], object), "vote": np.array(["Y", "Y", "Y"], object)}
    assert evaluate(rule, Answers(ids, options, {})).tolist() == [True, True, False]


@pytest.mark.parametrize(("text", "message"), [
    ("vot == 'Y'", "did you mean 'vote'"),
    ("vote == 'Yes'", "not one of its option ids"),
    ("value(vote) > 1", "have no 'value'"),
    ("vote < 'Y'", "compare numbers"),
    ("vote", "not a condition"),
])
def test_names_and_answers_are_checked_against_the_questions(text: str, message: str) -> None:
    with pytest.raises(RuleError, match=message):
        check_rule(text, {"vote": ["Y", "N"], "scale": ["1", "2"]}, {"scale"})


@pytest.mark.parametrize(("text", "construct"), [
    ("vote.__class__ == 'Y'", "attribute access"),
    ("__import__('os') == 'Y'", "call to '__import__'"),
    ("__builtins__ == 'Y'", "dunder name"),
    ("open('x') == 'Y'", "call to 'open'"),
    ("(lambda: 1)() == 1", "call to"),
    ("(lambda: 1) == 1", "a lambda"),
    ("value(scale) ** 999999999 > 1", "operator"),
    ("value(scale) > 10 ** 10 ** 10", "operator"),
    ("vote[0] == 'Y'", "subscript"),
    ("[x for x in ()] == 1", "comprehension"),
    ("f'{vote}' == 'Y'", "f-string"),
    ("value(scale) > 1" + "0" * 40, "at most 15 digits"),
    ("abs(value(scale), key=1) > 1", "keyword"),
    ("vote == 'Y' if True else False", "conditional"),
    ("(vote := 'Y') == 'Y'", "assignment"),
    ("vote == 'Y' or " * 400 + "vote == 'N'", "longer than the limit"),
])
def test_hostile_rules_are_refused_naming_the_construct(text: str, construct: str) -> None:
    with pytest.raises(RuleError, match=construct):
        check_rule(text, {"vote": ["Y", "N"], "scale": ["1", "2"]}, {"scale"})
    with pytest.raises(RuleError):  # the grammar alone refuses them too (the schema's check)
        check_rule(text)
