"""SYNTHETIC STAND-IN reference sample for the security-disclosure scenario (not human data).

The human data of Hunt et al. (2025) are unpublished. This module generates 929 synthetic
participants from a documented behavioural model (docs/standin.md), calibrated to the published
human aggregates: about 340 unique belief structures and a belief-action gap of about 24.7%.
One seed drives everything through ``numpy.random.default_rng(seed)``; every draw has a fixed
shape and none is made by rejection with parameter-dependent consumption, so changing a
behavioural parameter never shifts the random streams (which made calibration a clean search).

Regenerate the shipped files with ``python -m scenarios.standin.security_disclosure``.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

SEED = 20251126
N_PARTICIPANTS = 929
N_ROUNDS = 4
MODULE = "scenarios.standin.security_disclosure"
LABEL = "SYNTHETIC STAND-IN (not human data)"
CSV_NAME = "security_disclosure_synthetic_standin.csv"
JSON_NAME = "security_disclosure_synthetic_standin.json"

ETHNICITIES = ("White", "Black", "Asian", "Mixed", "Other")
GENDERS = ("Female", "Male", "Non-binary")
EDUCATIONS = ("High school", "Some college", "Bachelor's degree", "Graduate degree")
LOCATIONS = ("north", "south", "both", "neither")
TRUTH_BUCKETS = ("p00_20", "p21_40", "p41_60", "p61_80", "p81_100")
ANNOUNCED = ("north", "south", "north", "south")  # beach named in rounds 1..4 when specific
TRUTH_CUTS = (-1.2, -0.4, 0.4, 1.2)  # latent thresholds of the five probability buckets

CALIBRATION_TARGETS = {"unique_belief_structures": 340, "belief_action_gap": 0.247}
TOLERANCES = {
    "shipped_seed": {"unique_belief_structures": 20, "belief_action_gap": 0.010},
    "other_seeds": {"unique_belief_structures": 40, "belief_action_gap": 0.025},
}


@dataclass(frozen=True)
class StandinParams:
    """Every behavioural parameter of the stand-in model (defaults are the calibrated values)."""

    # demographics (shares in the order of ETHNICITIES, GENDERS, EDUCATIONS)
    ethnicity_shares: tuple[float, ...] = (0.62, 0.13, 0.10, 0.08, 0.07)
    gender_shares: tuple[float, ...] = (0.49, 0.48, 0.03)
    education_shares: tuple[float, ...] = (0.13, 0.27, 0.40, 0.20)
    age_beta: tuple[float, float] = (1.6, 3.4)  # age = 18 + 57 * Beta(a, b): mean about 36
    # latent trust in the queen's statements
    trust_per_decade: float = 0.12
    trust_ethnicity: tuple[float, ...] = (0.0, -0.4, 0.2, -0.2, -0.15)
    trust_sd: float = 0.8
    # latent bluff type: believes the queen announces the beach she does NOT protect
    bluff_logit: float = -1.7
    bluff_per_education: float = 0.25
    # answer precision: inverse temperature lambda_i = exp(mean + sd * z_i)
    precision_log_mean: float = 1.3
    precision_log_sd: float = 0.9
    # belief_location utilities (north, south, both, neither)
    u_both: float = -0.6
    u_neither: float = -0.9
    announced_pull: float = 2.2
    trust_pull: float = 1.0
    bluff_pull: float = 2.4
    vague_both: float = 1.3
    distrust_neither: float = 0.8
    unequal_north: float = 0.6
    known_unequal_north: float = 0.9
    memory: float = 1.2
    # belief_truth latent (ordered buckets)
    truth_mean: float = 0.0
    truth_trust: float = 0.6
    truth_specific: float = 0.45
    truth_agree: float = 0.35
    truth_bluff: float = -0.9
    truth_person_sd: float = 0.55
    truth_noise_sd: float = 0.215
    # choice model: logit P(attack north); must match TRUE_CHOICE_COEFFICIENTS
    choice_intercept: float = -0.5
    choice_believes_north: float = -0.65
    choice_believes_south: float = 1.0
    choice_unequal: float = 0.9
    choice_unknown: float = 0.35

    def choice_coefficients(self) -> dict[str, float]:
        """The choice logit's coefficients, named as statsmodels' formula API names them."""
        return {
            "Intercept": self.choice_intercept,
            "believes_north": self.choice_believes_north,
            "believes_south": self.choice_believes_south,
            "C(values)[T.unequal]": self.choice_unequal,
            "C(valuations)[T.unknown]": self.choice_unknown,
        }


TRUE_CHOICE_COEFFICIENTS: dict[str, float] = StandinParams().choice_coefficients()


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _draw_category(rng: np.random.Generator, shares: tuple[float, ...], n: int) -> np.ndarray:
    p = np.asarray(shares, dtype=float)
    return rng.choice(len(p), size=n, p=p / p.sum())


def generate(
    seed: int = SEED, n: int = N_PARTICIPANTS, params: StandinParams = StandinParams()
) -> pd.DataFrame:
    """Generate the stand-in sample: one wide row per synthetic participant."""
    p = params
    rng = np.random.default_rng(seed)
    # demographics
    eth = _draw_category(rng, p.ethnicity_shares, n)
    age = np.round(18 + 57 * stats.beta.ppf(rng.random(n), *p.age_beta))  # inversion: fixed draws
    gender = _draw_category(rng, p.gender_shares, n)
    edu = _draw_category(rng, p.education_shares, n)
    # balanced random assignment to the 2x2x2 treatment groups
    group = rng.permutation(np.arange(n) % 8)
    specific, unequal, unknown = group % 2 == 0, (group // 2) % 2 == 1, group // 4 == 1
    # participant latents
    trust = (p.trust_per_decade * (age - 40) / 10 + np.asarray(p.trust_ethnicity)[eth]
             + p.trust_sd * rng.standard_normal(n))
    bluff = rng.random(n) < _sigmoid(p.bluff_logit + p.bluff_per_education * (edu - 1.5))
    precision = np.exp(p.precision_log_mean + p.precision_log_sd * rng.standard_normal(n))
    truth_person = p.truth_person_sd * rng.standard_normal(n)
    # fixed-shape round noise, drawn up front so parameters never shift the streams
    gumbel = rng.gumbel(size=(N_ROUNDS, n, len(LOCATIONS)))
    truth_noise = rng.standard_normal((N_ROUNDS, n))
    choice_u = rng.random((N_ROUNDS, n))

    rows = np.arange(n)
    known_unequal = unequal & ~unknown
    out: dict[str, np.ndarray] = {}
    prev = np.full(n, -1)
    for r in range(N_ROUNDS):
        a = LOCATIONS.index(ANNOUNCED[r])
        o = 1 - a
        util = np.zeros((n, len(LOCATIONS)))
        util[:, 2] = p.u_both + p.vague_both * ~specific
        util[:, 3] = p.u_neither - p.distrust_neither * trust
        util[:, a] += specific * ~bluff * (p.announced_pull + p.trust_pull * trust)
        util[:, o] += specific * bluff * p.bluff_pull
        util[:, 0] += p.unequal_north * unequal + p.known_unequal_north * known_unequal
        has_prev = prev >= 0
        util[rows[has_prev], prev[has_prev]] += p.memory
        loc = np.argmax(precision[:, None] * util + gumbel[r], axis=1)
        agree = np.where(specific, (loc == a) | (loc == 2), loc != 3)
        latent = (p.truth_mean + p.truth_trust * trust + p.truth_specific * specific
                  + p.truth_agree * np.where(agree, 1.0, -1.0) + p.truth_bluff * bluff * specific
                  + truth_person + p.truth_noise_sd * truth_noise[r])
        truth = np.searchsorted(np.asarray(TRUTH_CUTS), latent)
        b_north = np.isin(loc, (0, 2)).astype(float)
        b_south = np.isin(loc, (1, 2)).astype(float)
        eta = (p.choice_intercept + p.choice_believes_north * b_north
               + p.choice_believes_south * b_south + p.choice_unequal * unequal
               + p.choice_unknown * unknown)
        attack_north = choice_u[r] < _sigmoid(eta)
        out[f"r{r + 1}_belief_location"] = np.asarray(LOCATIONS)[loc]
        out[f"r{r + 1}_belief_truth"] = np.asarray(TRUTH_BUCKETS)[truth]
        out[f"r{r + 1}_attack"] = np.where(attack_north, "north", "south")
        prev = loc

    return pd.concat([_people(eth, age, gender, edu, specific, unequal, unknown),
                      pd.DataFrame(out)], axis=1)


def _people(eth: np.ndarray, age: np.ndarray, gender: np.ndarray, edu: np.ndarray,
            specific: np.ndarray, unequal: np.ndarray, unknown: np.ndarray) -> pd.DataFrame:
    """The participants' ids, demographics and treatment groups, as the data file spells them."""
    return pd.DataFrame({
        "participant_id": [f"P{i + 1:03d}" for i in range(len(eth))],
        "ethnicity": np.asarray(ETHNICITIES)[eth],
        "age": age.astype(int),
        "gender": np.asarray(GENDERS)[gender],
        "education": np.asarray(EDUCATIONS)[edu],
        "disclosure": np.where(specific, "specific", "vague"),
        "value_structure": np.where(unequal, "unequal", "equal"),
        "valuation_known": np.where(unknown, "unknown", "known"),
    })


def long_form(df: pd.DataFrame) -> pd.DataFrame:
    """One row per participant-round, with the scenario's analysis indicators (0/1 integers)."""
    parts = []
    for r in range(1, N_ROUNDS + 1):
        part = pd.DataFrame({
            "participant_id": df["participant_id"],
            "round": r,
            "values": df["value_structure"],
            "valuations": df["valuation_known"],
            "disclosure": df["disclosure"],
            "belief_location": df[f"r{r}_belief_location"],
            "belief_truth": df[f"r{r}_belief_truth"],
            "attack": df[f"r{r}_attack"],
        })
        parts.append(part)
    long = pd.concat(parts, ignore_index=True)
    long["attack_north"] = (long["attack"] == "north").astype(int)
    long["believes_north"] = long["belief_location"].isin(["north", "both"]).astype(int)
    long["believes_south"] = long["belief_location"].isin(["south", "both"]).astype(int)
    return long


def calibration(df: pd.DataFrame) -> dict:
    """The calibrated aggregates: unique belief structures and the belief-action gap."""
    belief_cols = [f"r{r}_{q}" for r in range(1, N_ROUNDS + 1)
                   for q in ("belief_location", "belief_truth")]
    structures = int(df[belief_cols].drop_duplicates().shape[0])
    long = long_form(df)
    contradicts = ((long["belief_location"] == "north") & (long["attack"] == "north")) | (
        (long["belief_location"] == "south") & (long["attack"] == "south"))
    return {"unique_belief_structures": structures,
            "belief_action_gap": round(float(contradicts.mean()), 6)}


def csv_note(seed: int, n: int) -> list[str]:
    """The comment lines heading the shipped CSV."""
    return [
        f"# {LABEL}: {n} synthetic participants. NOT HUMAN DATA.",
        f"# Generated by {MODULE} with seed {seed}",
        "# from a behavioural model calibrated to the published human aggregates of",
        "# Wang et al. (arXiv 2511.21218); see docs/standin.md.",
        f"# Regenerate with: python -m {MODULE}",
    ]


def write(out_dir: Path, seed: int = SEED, n: int = N_PARTICIPANTS) -> None:
    """Write the stand-in CSV (with its comment header) and its JSON description to out_dir."""
    params = StandinParams()
    df = generate(seed, n, params)
    out_dir.mkdir(parents=True, exist_ok=True)
    with (out_dir / CSV_NAME).open("w", encoding="utf-8", newline="") as handle:
        handle.write("\n".join(csv_note(seed, n)) + "\n")
        df.to_csv(handle, index=False, lineterminator="\n")
    meta = {
        "label": f"{LABEL}: generated by a behavioural model, calibrated to published aggregates",
        "generator": MODULE,
        "seed": seed,
        "n": n,
        "params": asdict(params),
        "true_choice_coefficients": params.choice_coefficients(),
        "choice_formula": "attack_north ~ believes_north + believes_south + C(values)"
                          " + C(valuations)",
        "calibration_targets": CALIBRATION_TARGETS,
        "calibration_realised": calibration(df),
        "tolerances": TOLERANCES,
    }
    (out_dir / JSON_NAME).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")


def main() -> None:
    """Regenerate the shipped files in scenarios/data/."""
    out_dir = Path(__file__).resolve().parents[1] / "data"
    write(out_dir)
    print(f"wrote {out_dir / CSV_NAME} and {out_dir / JSON_NAME}")


if __name__ == "__main__":
    main()
