"""Option ids as any short text (numbers too), one reader for recorded values, option values,
`coding: linear` and indicators with `versus` (issue 14, spec A-C), on the real Chile survey."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from analysis.regression import RegressionSpec, fit
from analysis.samples import option_indices, participant_rounds
from engine.twin_answers import matching_option
from scenarios.questions import Question
from tests.h1_chile import chile_resolved, chile_table, experiment, human_sample


def _likert(**extra) -> Question:
    options = [{"id": i, "text": f"point {i}", "value": i} for i in range(1, 6)]
    return Question.model_validate({"id": "scale", "type": "likert", "text": "?",
                                    "options": options, **extra})


def test_yaml_numbers_become_option_ids_and_booleans_are_refused_with_a_hint() -> None:
    assert _likert().option_ids == ["1", "2", "3", "4", "5"]
    floats = Question.model_validate({"id": "q", "type": "single_choice", "text": "?", "options": [
        {"id": 7.0, "text": "a"}, {"id": "-1", "text": "b"}]})
    assert floats.option_ids == ["7.0", "-1"] and floats.read("7") == 0
    with pytest.raises(ValidationError, match="whitespace"):
        Question.model_validate({"id": "q", "type": "single_choice", "text": "?", "options": [
            {"id": "x y", "text": "a"}, {"id": "b", "text": "b"}]})
    with pytest.raises(ValidationError, match="quote it"):
        Question.model_validate({"id": "q", "type": "single_choice", "text": "?", "options": [
            {"id": True, "text": "a"}, {"id": "b", "text": "b"}]})
    with pytest.raises(ValidationError, match="same number"):
        Question.model_validate({"id": "q", "type": "single_choice", "text": "?", "options": [
            {"id": "1", "text": "a"}, {"id": 1.0, "text": "b"}]})


def test_validation_analysis_and_show_read_real_float_cells_alike() -> None:
    """Chile's statusquo_bin read by pandas is "-2.0" ... "2.0"; the options are "-2" ... "2"."""
    table = chile_table()
    exp = experiment()
    analysed = exp.questions[exp.question_index("statusquo")]
    from scenarios.loader import load_scenario
    from tests.h1_chile import CHILE

    question = load_scenario(CHILE).scenario.question("statusquo")
    cells = table["statusquo_bin"].dropna().astype(str)
    assert set(cells) == {"-2.0", "-1.0", "0.0", "1.0", "2.0"}
    assert not question.unreadable(cells).any()
    by_validation = [question.read(c) for c in cells]
    by_analysis = option_indices(cells, analysed, "test").tolist()
    assert by_validation == by_analysis
    options = chile_resolved()["stages"][0]["questions"][0]["options"]
    assert {matching_option(c, options) for c in cells} == set(question.option_ids)
    assert question.unreadable(pd.Series(["3", "yes", None])).tolist() == [True, True, False]


def test_linear_coding_enters_a_logit_as_one_coefficient_not_as_ranks() -> None:
    table = chile_table()
    exp = experiment()
    sample = human_sample(exp, table)
    rows = participant_rounds(sample, exp)
    assert rows["statusquo"].dtype == float
    assert sorted(rows["statusquo"].dropna().unique()) == [-2.0, -1.0, 0.0, 1.0, 2.0]
    spec = RegressionSpec("yes", "logit", "vote_yes ~ statusquo + C(sex)")
    result = fit(rows, spec, exp)
    assert result.estimable, result.not_estimable
    assert "statusquo" in result.coefficients.index
    assert not any(t.startswith("statusquo[") for t in result.coefficients.index)
    assert result.coefficients.loc["statusquo", "estimate"] > 0
    # Without strongly opposing respondents the value of "-1" is still -1, never a rank 0.
    kept = table[table["statusquo_bin"] != -2.0]
    subset = participant_rounds(human_sample(exp, kept), exp)
    assert subset["statusquo"].min() == -1.0


def test_indicator_versus_leaves_other_answers_out_of_the_regression() -> None:
    table = chile_table()
    exp = experiment()
    rows = participant_rounds(human_sample(exp, table), exp)
    vote = table["vote"]
    assert (rows["vote_yes"] == 1).sum() == (vote == "Y").sum()
    assert (rows["vote_yes"] == 0).sum() == (vote == "N").sum()
    assert rows["vote_yes"].isna().sum() == (~vote.isin(["Y", "N"])).sum()
    result = fit(rows, RegressionSpec("yes", "logit", "vote_yes ~ statusquo"), exp)
    assert result.n == int(vote.isin(["Y", "N"]).sum() - (vote.isin(["Y", "N"])
                                                         & table["statusquo_bin"].isna()).sum())


def test_linear_coding_needs_a_value_on_every_option_and_ordered_overrides_the_type() -> None:
    with pytest.raises(ValidationError, match="give every option a 'value'"):
        Question.model_validate({"id": "q", "type": "single_choice", "text": "?",
                                 "coding": "linear", "options": [
                                     {"id": "a", "text": "a", "value": 1}, {"id": "b", "text": "b"}]})
    assert _likert().ordered is True and _likert(ordered=False).ordered is False
    dumped = _likert().model_dump(mode="json", by_alias=True)
    assert list(dumped)[-1] == "ordered" and "coding" not in dumped and "missing_codes" not in dumped
    assert _likert(coding="linear").model_dump()["coding"] == "linear"
    assert np.isclose(_likert().options[2].value, 3.0)


def test_the_resolved_record_carries_the_new_fields_only_where_a_scenario_sets_them() -> None:
    resolved = chile_resolved()
    statusquo, vote = (q for stage in resolved["stages"] for q in stage["questions"])
    assert statusquo["coding"] == "linear" and "coding" not in vote
    assert [o["value"] for o in statusquo["options"]] == [-2.0, -1.0, 0.0, 1.0, 2.0]
    assert all(set(rule) == {"name", "when"} for rule in resolved["coherence"])
    assert resolved["analysis"]["indicators"]["vote_yes"]["versus"] == ["N"]
    assert "fit" not in resolved["analysis"]["regressions"][0]
    assert matching_option("Z", vote["options"]) == "Z"  # `show` prints an unknown cell as is
