"""Specifications of the SYNTHETIC STAND-IN reference sample for the security-disclosure scenario."""

import json
import sys
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import statsmodels.formula.api as smf

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # lets plain `pytest` import the project without installing it
    sys.path.insert(0, str(ROOT))

from scenarios.standin import security_disclosure as sd  # noqa: E402

DATA = ROOT / "scenarios" / "data"
CSV = DATA / sd.CSV_NAME
JSON = DATA / sd.JSON_NAME
CHOICE_FORMULA = "attack_north ~ believes_north + believes_south + C(values) + C(valuations)"
OTHER_SEEDS = (1, 2, 3)
EXPECTED_COLUMNS = [
    "participant_id", "ethnicity", "age", "gender", "education",
    "disclosure", "value_structure", "valuation_known",
] + [f"r{r}_{q}" for r in range(1, 5) for q in ("belief_location", "belief_truth", "attack")]


def _comment_lines() -> list[str]:
    lines = []
    with CSV.open(encoding="utf-8") as handle:
        for line in handle:
            if not line.startswith("#"):
                break
            lines.append(line)
    return lines


@pytest.fixture(scope="module")
def shipped() -> pd.DataFrame:
    return pd.read_csv(CSV, skiprows=len(_comment_lines()))


@pytest.fixture(scope="module")
def meta() -> dict:
    return json.loads(JSON.read_text(encoding="utf-8"))


def _covered_and_signs(df: pd.DataFrame, truth: dict[str, float]) -> tuple[int, bool]:
    """How many true coefficients the 95% CIs cover, and whether every sign is recovered."""
    fit = sd.long_form(df).pipe(lambda d: smf.logit(CHOICE_FORMULA, d).fit(disp=0))
    assert set(fit.params.index) == set(truth), "coefficient names differ from statsmodels'"
    ci = fit.conf_int()
    covered = sum(ci.loc[k, 0] <= v <= ci.loc[k, 1] for k, v in truth.items())
    signs = all(np.sign(fit.params[k]) == np.sign(v) for k, v in truth.items())
    return covered, signs


# (a) reproducibility
def test_shipped_csv_is_exactly_regenerated_from_its_seed(tmp_path: Path, meta: dict) -> None:
    assert meta["seed"] == sd.SEED and meta["n"] == sd.N_PARTICIPANTS
    sd.write(tmp_path, seed=meta["seed"], n=meta["n"])
    assert (tmp_path / sd.CSV_NAME).read_bytes() == CSV.read_bytes()


def test_shipped_json_is_exactly_regenerated_and_records_the_model(
    tmp_path: Path, meta: dict
) -> None:
    sd.write(tmp_path)
    assert (tmp_path / sd.JSON_NAME).read_bytes() == JSON.read_bytes()
    assert meta["generator"] == "scenarios.standin.security_disclosure"
    assert meta["params"] == json.loads(json.dumps(asdict(sd.StandinParams())))
    assert meta["true_choice_coefficients"] == sd.TRUE_CHOICE_COEFFICIENTS
    assert meta["label"].startswith("SYNTHETIC STAND-IN")


def test_same_seed_gives_same_sample_and_other_seed_differs() -> None:
    pd.testing.assert_frame_equal(sd.generate(7), sd.generate(7))
    assert not sd.generate(7).equals(sd.generate(8))


# (b) calibration
def test_shipped_sample_meets_calibration_targets_within_stated_tolerances(
    shipped: pd.DataFrame, meta: dict
) -> None:
    realised = sd.calibration(shipped)
    assert realised == meta["calibration_realised"]
    tol = sd.TOLERANCES["shipped_seed"]
    for key, target in sd.CALIBRATION_TARGETS.items():
        assert abs(realised[key] - target) <= tol[key], (key, realised[key], target)
    assert isinstance(realised["unique_belief_structures"], int)
    assert 0.0 <= realised["belief_action_gap"] <= 1.0


@pytest.mark.parametrize("seed", OTHER_SEEDS)
def test_other_seeds_meet_calibration_targets_within_wider_tolerances(seed: int) -> None:
    realised = sd.calibration(sd.generate(seed))
    tol = sd.TOLERANCES["other_seeds"]
    for key, target in sd.CALIBRATION_TARGETS.items():
        assert abs(realised[key] - target) <= tol[key], (seed, key, realised[key], target)


# (c) the choice model is the analysis formula and a pooled logit recovers it
@pytest.mark.parametrize("seed", (sd.SEED, *OTHER_SEEDS))
def test_logit_recovers_every_true_sign_and_ci_covers_at_least_four_of_five(seed: int) -> None:
    covered, signs = _covered_and_signs(sd.generate(seed), sd.TRUE_CHOICE_COEFFICIENTS)
    assert signs
    assert covered >= 4, f"only {covered} of 5 true coefficients inside their 95% CI"


def test_estimates_averaged_over_four_seeds_lie_within_three_standard_errors_of_truth() -> None:
    fits = [
        smf.logit(CHOICE_FORMULA, sd.long_form(sd.generate(seed))).fit(disp=0)
        for seed in (sd.SEED, *OTHER_SEEDS)
    ]
    for name, true in sd.TRUE_CHOICE_COEFFICIENTS.items():
        mean = np.mean([fit.params[name] for fit in fits])
        se = np.sqrt(sum(fit.bse[name] ** 2 for fit in fits)) / len(fits)
        assert abs(mean - true) <= 3 * se, (name, mean, true, se)


def test_recovery_check_rejects_wrong_true_coefficients(shipped: pd.DataFrame) -> None:
    wrong = {k: -v for k, v in sd.TRUE_CHOICE_COEFFICIENTS.items()}
    covered, signs = _covered_and_signs(shipped, wrong)
    assert not signs and covered == 0


# (d) structure and balance
def test_columns_are_exactly_as_specified_with_no_missing_values(shipped: pd.DataFrame) -> None:
    assert list(shipped.columns) == EXPECTED_COLUMNS
    assert len(shipped) == 929 and not shipped.isna().any().any()
    assert list(shipped["participant_id"]) == [f"P{i:03d}" for i in range(1, 930)]


def test_treatment_groups_are_balanced(shipped: pd.DataFrame) -> None:
    sizes = shipped.groupby(["disclosure", "value_structure", "valuation_known"]).size()
    assert len(sizes) == 8 and set(sizes) <= {116, 117} and sizes.sum() == 929


def test_values_are_within_the_option_ids(shipped: pd.DataFrame) -> None:
    allowed = {
        "ethnicity": set(sd.ETHNICITIES), "gender": set(sd.GENDERS),
        "education": set(sd.EDUCATIONS), "disclosure": {"specific", "vague"},
        "value_structure": {"equal", "unequal"}, "valuation_known": {"known", "unknown"},
    }
    for r in range(1, 5):
        allowed[f"r{r}_belief_location"] = {"north", "south", "both", "neither"}
        allowed[f"r{r}_belief_truth"] = {"p00_20", "p21_40", "p41_60", "p61_80", "p81_100"}
        allowed[f"r{r}_attack"] = {"north", "south"}
    for column, ids in allowed.items():
        assert set(shipped[column]) <= ids, column
    assert shipped["age"].between(18, 75).all() and shipped["age"].dtype.kind == "i"
    shares = shipped["ethnicity"].value_counts(normalize=True)
    assert shares["White"] > 0.5 and all(shares > 0.03)


# behavioural plausibility: the treatments matter
def test_treatments_move_beliefs_and_attacks_in_the_modelled_directions(
    shipped: pd.DataFrame,
) -> None:
    long = sd.long_form(shipped)
    spec = long[long["disclosure"] == "specific"]
    announced = spec["round"].map(lambda r: sd.ANNOUNCED[r - 1])
    assert (spec["belief_location"] == announced).mean() > 0.55
    vague = long[long["disclosure"] == "vague"]
    assert (vague["belief_location"] == "both").mean() > 0.4
    north = long.assign(n=long["belief_location"] == "north").groupby(["values", "valuations"])["n"]
    assert north.mean()[("unequal", "known")] > north.mean()[("equal", "known")] + 0.2
    by_values = long.groupby("values")["attack_north"].mean()
    assert by_values["unequal"] > by_values["equal"]
    high = long["belief_truth"].isin(["p61_80", "p81_100"])
    assert high[long["disclosure"] == "specific"].mean() > high[long["disclosure"] == "vague"].mean()


# (e) it is never mistaken for human data
def test_csv_comment_header_says_synthetic_stand_in_not_human_data() -> None:
    note = "".join(_comment_lines())
    assert _comment_lines()[0].startswith("# SYNTHETIC STAND-IN")
    assert "NOT HUMAN DATA" in note and "scenarios.standin.security_disclosure" in note
    assert f"seed {sd.SEED}" in note
