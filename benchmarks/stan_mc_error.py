"""How much of a formula fit's distance from Stan is Stan's own Monte Carlo error.

Usage: python benchmarks/stan_mc_error.py --fit DIR [--seeds 0,1] [--stan-draws 1000,5000]
A saved fit (``AmortizedFit.save``, e.g. ``formula.py --out``'s ``<case>_fit``) is drawn again
with each seed, and each set of draws is compared with Stan runs of the same model at each
number of draws per chain (4 chains, another Stan seed per length). Prints one JSON object: per
pair, the mean difference of every parameter in Stan posterior SDs and the largest over the
fixed effects. A gap that shrinks with Stan's draws and moves with the seed is Monte Carlo
error, not the amortizer's.
"""

from __future__ import annotations

import json

from _common import parser, setup


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--fit", required=True, help="folder of a saved formula fit")
    p.add_argument("--seeds", default="0,1", help="seeds of the importance-corrected draws")
    p.add_argument("--stan-draws", default="1000,5000", help="Stan draws per chain, one run each")
    p.add_argument("--draws", type=int, default=4000)
    args = p.parse_args()
    setup(args)
    from amortbayes.formula.checks import compare_stan
    from amortbayes.formula.fit import AmortizedFit

    out = {}
    for seed in [int(s) for s in args.seeds.split(",")]:
        fit = AmortizedFit.load(args.fit, draws=args.draws, seed=seed)
        for i, draws in enumerate(int(d) for d in args.stan_draws.split(",")):
            table = compare_stan(fit, chains=4, warmup=1000, draws=draws, seed=1 + 6 * i)
            table = table.set_index("parameter") if "parameter" in table.columns else table
            diff = table["mean_diff_in_sd"]
            out[f"draws_seed{seed}_stan_4x{draws}"] = {
                "max_fixed": round(float(diff[[str(c).startswith("b_") for c in diff.index]].max()), 3),
                "per_parameter": {str(k): round(float(v), 3) for k, v in diff.items()},
            }
    print(json.dumps({"benchmark": "stan_mc_error", "fit": args.fit, "runs": out}, indent=1))


if __name__ == "__main__":
    main()
