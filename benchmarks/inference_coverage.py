"""Coverage of the truth at 90% and mean interval width: humans only, simulated only, PPI++.

    python benchmarks/inference_coverage.py --standin-run RUN_DIR [--repetitions 200]

Each repetition draws `--labelled` humans at random (their twins' answers beside them) and uses
the rest as unlabelled (simulation only), then records whether each estimator's 90% interval
covers the truth and how wide it is.

1. The synthetic stand-in (scenarios/data/security_disclosure_synthetic_standin.csv) with the
   simulated answers of RUN_DIR, a run of the flagship's twins (e.g. `python run.py run
   scenarios/security_disclosure.yaml` on builtin:tiny: all 929 twins). Truth: the full 929-row
   sample's proportions, and the generator's own coefficients of `attack_choice` (the JSON beside
   the CSV). A random-weight model predicts nothing, so this is the "bad model" case.
2. The real Chile survey (/work/shared/data/chile_plebiscite_1988.csv; no Chile scenario exists,
   so "simulated participants" are a model's predictions, stated here): complete cases on vote,
   statusquo, sex, age, education, income and region; a logistic model of vote == Y on those
   covariates (and one of vote == N) is fitted on a seeded 25% "pilot", and the other 75% are the
   population whose full classical estimate is the truth. "good" predicts with those models; "bad"
   with their logits halved and shifted by +0.8 for Y, -0.8 for N (a systematically pro-Yes, less
   informative model). Estimands: P(vote = Y), P(vote = N) and the statusquo slope of the logit
   `yes ~ statusquo + sex` (the prediction enters as a soft label P(Y)).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from analysis.inference import classical_mean, naive_mean, ppi_mean  # noqa: E402
from analysis.inference_regression import part, ppi_coefficients, single_sample  # noqa: E402
from analysis.inference_run import expected_answers, human_values, simulated_values  # noqa: E402
from analysis.inference_tables import SEP, _matrices, _tagged  # noqa: E402
from analysis.run_dir import read_run  # noqa: E402

CHILE = Path("/work/shared/data/chile_plebiscite_1988.csv")
STANDIN_TRUTH = ROOT / "scenarios" / "data" / "security_disclosure_synthetic_standin.json"
ALPHA = 0.1
ESTIMATORS = ("classical", "naive", "ppi")


class Tally:
    """Coverage counts and widths per (dataset, model, estimand, estimator)."""

    def __init__(self) -> None:
        self.rows: dict[tuple[str, ...], list[tuple[bool, float]]] = {}

    def add(self, key: tuple[str, ...], estimates: dict[str, object], truth: float) -> None:
        for name in ESTIMATORS:
            e = estimates[name]
            if e.estimable:
                self.rows.setdefault((*key, name), []).append((e.low <= truth <= e.high,
                                                               e.high - e.low))

    def table(self) -> list[dict[str, object]]:
        out = []
        for (dataset, model, estimand, n, big_n, estimator), hits in self.rows.items():
            out.append({"dataset": dataset, "model": model, "estimand": estimand, "n": n,
                        "N": big_n, "estimator": estimator, "repetitions": len(hits),
                        "coverage_90": float(np.mean([h for h, _ in hits])),
                        "mean_width": float(np.mean([w for _, w in hits]))})
        return out


def _mean_estimates(y, yhat, labelled):
    unlabelled = ~labelled
    return {"classical": classical_mean(y[labelled], ALPHA), "naive": naive_mean(yhat, ALPHA),
            "ppi": ppi_mean(y[labelled], yhat[labelled], yhat[unlabelled], ALPHA)}


def _regression_estimates(family, x_h, y_h, c_h, x_s, y_s, c_s, labelled_ids, terms):
    """Classical / naive / PPI++ cells of the coefficients `terms` (positions), by position;
    rows clustered by participant (c_h, c_s: each row's participant)."""
    keep, keep_s = np.isin(c_h, labelled_ids), np.isin(c_s, labelled_ids)
    order = list(labelled_ids)
    human = part(x_h[keep], y_h[keep], c_h[keep], order)
    twin = part(x_s[keep_s], y_s[keep_s], c_s[keep_s], order)
    unlabelled = part(x_s[~keep_s], y_s[~keep_s], c_s[~keep_s])
    out = {"classical": single_sample(family, part(x_h[keep], y_h[keep], c_h[keep]), ALPHA,
                                      "labelled human"),
           "naive": single_sample(family, part(x_s, y_s, c_s), ALPHA, "simulated"),
           "ppi": ppi_coefficients(family, human, twin, unlabelled, ALPHA)}
    return {j: {k: (v[j] if not isinstance(v, str) else _Missing()) for k, v in out.items()}
            for j in terms}


class _Missing:
    estimable = False


def standin(run_dir: Path, repetitions: int, n: int, tally: Tally, seed: int,
            policy_name: str | None = None) -> None:
    """The stand-in's proportions and attack_choice coefficients over repeated splits, with
    the answers of the run's policy `policy_name` (default: its first)."""
    inputs = read_run(run_dir, None)
    experiment, names = inputs.experiment, [p.name for p in inputs.policies]
    if policy_name is not None and policy_name not in names:
        raise SystemExit(f"--policy {policy_name!r}: the run's policies are {', '.join(names)}")
    policy = inputs.policies[names.index(policy_name) if policy_name else 0]
    ids = sorted(set(policy.participant_ids) & set(inputs.human.participant_ids))
    from analysis.inference_run import subset

    human, twin = subset(inputs.human, ids), subset(policy, ids)
    probs = expected_answers(run_dir, experiment, policy.name, ids)
    targets = [("attack", 0), ("belief_location", 0), ("belief_location", 2)]
    series = []
    for qid, k in targets:
        q = experiment.question_index(qid)
        y = human_values(human.answers, q, k)
        yhat = simulated_values(probs[qid], k)
        ok = ~np.isnan(y) & ~np.isnan(yhat)
        series.append((f"P({qid}={experiment.questions[q].options[k]})", y[ok], yhat[ok],
                       np.asarray(ids)[ok]))
    spec = next(r for r in experiment.regressions if r.name == "attack_choice")
    built = _matrices(spec, experiment, [_tagged(human, experiment, "h"),
                                         _tagged(twin, experiment, "t")])
    y_all, x_all, row_ids = built
    tag, _, bare = (row_ids.str.partition(SEP)[c] for c in (0, 1, 2))
    h, t = (tag == "h").to_numpy(), (tag == "t").to_numpy()
    x_h, y_h, c_h = x_all.to_numpy()[h], y_all.to_numpy()[h], bare[h].to_numpy()
    x_t, y_t, c_t = x_all.to_numpy()[t], y_all.to_numpy()[t], bare[t].to_numpy()
    common = np.intersect1d(c_h, c_t)  # rows with both a human and a twin answer
    truth = json.loads(STANDIN_TRUTH.read_text())["true_choice_coefficients"]
    rng = np.random.default_rng(seed)
    model = f"{policy.name} ({inputs.manifest.get('model', {}).get('name', 'run model')})"
    for _ in range(repetitions):
        labelled_ids = rng.choice(ids, size=n, replace=False)
        for name, y, yhat, present in series:
            labelled = np.isin(present, labelled_ids)
            tally.add(("stand-in", model, name, str(n), str(len(y) - n)),
                      _mean_estimates(y, yhat, labelled), float(y.mean()))
        keep_h, keep_t = np.isin(c_h, common), np.isin(c_t, common)
        terms = {list(x_all.columns).index(t): t for t in ("believes_north", "believes_south")}
        both = set(common)
        cells = _regression_estimates("logit", x_h[keep_h], y_h[keep_h], c_h[keep_h],
                                      x_t[keep_t], y_t[keep_t], c_t[keep_t],
                                      [i for i in labelled_ids if i in both], list(terms))
        for j, term in terms.items():
            tally.add(("stand-in", model, f"attack_choice: {term}", str(n), str(len(ids) - n)),
                      cells[j], truth[term])


def chile(repetitions: int, n: int, tally: Tally, seed: int) -> None:
    """The Chile survey with a good and a bad prediction model over repeated splits."""
    from analysis.inference_regression import minimise

    data = pd.read_csv(CHILE)
    columns = ["vote", "statusquo", "sex", "age", "education", "income", "region"]
    data = data[columns].dropna().reset_index(drop=True)
    covariates = pd.get_dummies(data[["sex", "education", "region"]], drop_first=True, dtype=float)
    covariates["statusquo"] = data["statusquo"]
    covariates["age10"] = data["age"] / 10
    covariates["log_income"] = np.log(data["income"])
    x_model = np.column_stack([np.ones(len(data)), covariates.to_numpy(float)])
    yes = (data["vote"] == "Y").to_numpy(float)
    no = (data["vote"] == "N").to_numpy(float)
    rng = np.random.default_rng(seed)
    pilot = rng.random(len(data)) < 0.25
    ids = np.array([f"c{i}" for i in range(len(data))])
    pool = ~pilot
    logits = {}
    for answer, y in (("Y", yes), ("N", no)):  # one logistic model per answer, on the pilot
        beta = minimise("logit", [(1.0, part(x_model[pilot], y[pilot], ids[pilot]))],
                        np.zeros(x_model.shape[1]))
        logits[answer] = x_model[pool] @ beta
    models = {"good": {a: 1 / (1 + np.exp(-e)) for a, e in logits.items()},
              "bad": {a: 1 / (1 + np.exp(-(0.5 * e + (0.8 if a == "Y" else -0.8))))
                      for a, e in logits.items()}}
    x_reg = np.column_stack([np.ones(pool.sum()), data.loc[pool, "statusquo"],
                             (data.loc[pool, "sex"] == "M").astype(float)])
    y_yes, y_no, pool_ids = yes[pool], no[pool], ids[pool]
    truth_fit = single_sample("logit", part(x_reg, y_yes, pool_ids), ALPHA, "human")
    slope_truth = truth_fit[1].estimate
    big_n = int(pool.sum()) - n
    for _ in range(repetitions):
        labelled = np.zeros(pool.sum(), bool)
        labelled[rng.choice(pool.sum(), size=n, replace=False)] = True
        for model, predicted in models.items():
            p_yes = predicted["Y"]
            for name, y, yhat in (("P(vote=Y)", y_yes, p_yes), ("P(vote=N)", y_no, predicted["N"])):
                tally.add(("Chile", model, name, str(n), str(big_n)),
                          _mean_estimates(y, yhat, labelled), float(y.mean()))
            human = part(x_reg[labelled], y_yes[labelled], pool_ids[labelled])
            twin = part(x_reg[labelled], p_yes[labelled], pool_ids[labelled])
            unl = part(x_reg[~labelled], p_yes[~labelled], pool_ids[~labelled])
            cells = {"classical": single_sample("logit", human, ALPHA, "labelled human"),
                     "naive": single_sample("logit", part(x_reg, p_yes, pool_ids), ALPHA,
                                            "simulated"),
                     "ppi": ppi_coefficients("logit", human, twin, unl, ALPHA)}
            tally.add(("Chile", model, "logit yes ~ statusquo + sex: statusquo", str(n),
                       str(big_n)),
                      {k: (v[1] if not isinstance(v, str) else _Missing()) for k, v in
                       cells.items()}, slope_truth)


def main() -> int:
    """Run both benchmarks and print a markdown table (and --out JSON)."""
    args = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    args.add_argument("--standin-run", type=Path, default=None,
                      help="a run of the flagship's twins (skipped when absent)")
    args.add_argument("--repetitions", type=int, default=200)
    args.add_argument("--labelled", type=int, default=100, help="labelled humans per split")
    args.add_argument("--seed", type=int, default=0)
    args.add_argument("--policy", default=None,
                      help="the stand-in run's policy to use (default: its first)")
    args.add_argument("--no-chile", action="store_true", help="only the stand-in")
    args.add_argument("--out", type=Path, default=None, help="write the table as JSON here")
    opts = args.parse_args()
    tally, started = Tally(), time.perf_counter()
    with np.errstate(all="ignore"):
        if opts.standin_run is not None:
            standin(opts.standin_run, opts.repetitions, opts.labelled, tally, opts.seed,
                    opts.policy)
        if not opts.no_chile:
            chile(opts.repetitions, opts.labelled, tally, opts.seed)
    rows = tally.table()
    print(f"{opts.repetitions} repetitions, {opts.labelled} labelled humans, 90% intervals, "
          f"{time.perf_counter() - started:.0f} s")
    print("| data | model | estimand | n | N | estimator | coverage (90%) | mean width |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['dataset']} | {r['model']} | {r['estimand']} | {r['n']} | {r['N']} | "
              f"{r['estimator']} | {r['coverage_90']:.3f} | {r['mean_width']:.3f} |")
    if opts.out:
        opts.out.write_text(json.dumps(rows, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
