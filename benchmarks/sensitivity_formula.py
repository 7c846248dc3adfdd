"""Power-scaling sensitivity of formula fits: from the context-conditioned network against reweighting the exact draws.

Usage: python benchmarks/sensitivity_formula.py [--budget STEPS] [--cases sleepstudy,cbpp] [--out DIR]
Prints one JSON object.  For each case a formula fit is trained with sensitivity contexts
(``amortize(..., sensitivity=...)``): the prior power alpha in [0.5, 2] and, for the gaussian
sleepstudy model, the likelihood power beta in [0.5, 2].  Its importance-corrected draws give
priorsense's sensitivity by reweighting (``powerscale_sensitivity(method="reweight")``, the
reference); the network gives it from the density ratio of its global flow between powers
(``method="amortized"``).  Reported per parameter: both values, both diagnoses, training time.

Cases: sleepstudy ``Reaction ~ Days + (Days | Subject)`` (gaussian); cbpp
``incidence | trials(size) ~ period + (1 | herd)`` (binomial GLMM; likelihood powers are not
simulable for it, so prior only).
"""

from __future__ import annotations

import time
import warnings
from pathlib import Path

from _common import emit, parser, setup


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--budget", type=int, default=10_000, help="training steps per fit")
    p.add_argument("--cases", default="sleepstudy,cbpp")
    p.add_argument("--draws", type=int, default=4000)
    p.add_argument("--out", default="benchmark-sensitivity-formula")
    args = p.parse_args()
    device = setup(args)
    from amortbayes import amortize, power_scale
    from amortbayes.data import load_cbpp, load_sleepstudy

    cases = {
        "sleepstudy": ("Reaction ~ Days + (Days | Subject)", load_sleepstudy, "gaussian",
                       {"alpha": power_scale("prior"), "beta": power_scale("likelihood")}),
        "cbpp": ("incidence | trials(size) ~ period + (1 | herd)", load_cbpp, "binomial",
                 {"alpha": power_scale("prior")}),
    }
    warnings.simplefilter("ignore")
    result = {"budget": args.budget}
    for name in [c.strip() for c in args.cases.split(",")]:
        formula, load, family, space = cases[name]
        t0 = time.perf_counter()
        fit = amortize(formula, load(), family=family, budget=args.budget, draws=args.draws, progress=False,
                       sensitivity=space, file=Path(args.out) / name)
        seconds = time.perf_counter() - t0
        ref = fit.powerscale_sensitivity(method="reweight").set_index("variable")
        t0 = time.perf_counter()
        net = fit.powerscale_sensitivity(method="amortized", n=args.draws).set_index("variable")
        amortized_seconds = time.perf_counter() - t0
        rows = {}
        for v in net.index:
            rows[v] = {"prior": [round(float(net.loc[v, "prior"]), 4), round(float(ref.loc[v, "prior"]), 4)],
                       "likelihood": [round(float(net.loc[v, "likelihood"]), 4), round(float(ref.loc[v, "likelihood"]), 4)],
                       "diagnosis": [net.loc[v, "diagnosis"], ref.loc[v, "diagnosis"]]}
        result[name] = {"formula": formula, "family": family, "contexts": list(space),
                        "fit_seconds": round(seconds, 1), "amortized_powerscale_seconds": round(amortized_seconds, 2),
                        "pareto_k": round(float(fit.posterior.diagnostics["pareto_k"]), 3)
                        if fit.posterior.diagnostics else None,
                        "per_parameter_network_vs_reweighting": rows,
                        "same_prior_flags": sum(bool((net.loc[v, "prior"] >= 0.05) == (ref.loc[v, "prior"] >= 0.05))
                                                for v in net.index),
                        "same_diagnoses": sum(bool(r["diagnosis"][0] == r["diagnosis"][1]) for r in rows.values()),
                        "parameters": len(rows)}
    emit({"benchmark": "sensitivity_formula", **result}, device)


if __name__ == "__main__":
    main()
