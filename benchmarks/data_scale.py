"""Formula fits on designs of hundreds to ten thousand rows: step time, training time, fit time, accuracy against Stan.

Usage: python benchmarks/data_scale.py [--cases gaussian_sleepstudy,gaussian_exam,...] [--steps-only] [--out DIR]
Prints one JSON object with, per design (rows, groups): the time of one training step at batch 32
in the model's own layout and, for gaussian models, in the rows layout too (the moments layout
simulates and reads each group's sufficient statistics, amortbayes.moments); and, unless
--steps-only, the whole formula benchmark of that case (benchmarks/formula.py's run_case:
training time at the default budget, raw and importance-corrected fit time, update and LOGO
time, Stan's time and the accuracy bars against Stan for the same data).
"""

from __future__ import annotations

import time
from pathlib import Path

import torch

from _common import emit, parser, setup
from formula import CASES, run_case

DESIGNS = ["gaussian_sleepstudy", "gaussian_exam", "gaussian_synthetic10k", "bernoulli_contraception"]


def step_seconds(model, steps: int = 20, batch: int = 32) -> float:
    """Median seconds of one simulate + loss + backward + Adam step of the formula amortizer of ``model``."""
    from amortbayes.amortizers import MultilevelAmortizer
    from amortbayes.formula.fit import network_settings

    amortizer = MultilevelAmortizer(model, network_settings(model))
    gen = torch.Generator().manual_seed(0)
    amortizer.adapt(model.simulate(256, gen))
    opt = torch.optim.Adam(amortizer.parameters(), 1e-3)
    times = []
    for _ in range(steps + 2):
        t0 = time.perf_counter()
        loss = amortizer.loss(model.simulate(batch, gen))
        opt.zero_grad()
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - t0)
    return round(sorted(times[2:])[len(times[2:]) // 2], 4)


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--cases", default=",".join(DESIGNS))
    p.add_argument("--steps-only", action="store_true", help="step times only (no training, no Stan)")
    p.add_argument("--budget", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--simulated", action="store_true")
    p.add_argument("--stan-chains", type=int, default=4)
    p.add_argument("--stan-warmup", type=int, default=1000)
    p.add_argument("--stan-draws", type=int, default=1000)
    p.add_argument("--out", default="benchmark-data-scale")
    args = p.parse_args()
    device = setup(args)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    from amortbayes.formula import parse_terms
    from amortbayes.formula.model import FormulaModel

    results = {}
    for name in [c.strip() for c in args.cases.split(",") if c.strip()]:
        formula, family, load = CASES[name]
        terms = parse_terms(formula, load())
        model = FormulaModel(terms, family)
        entry = {"rows": len(terms.y), "groups": len(terms.levels), "group_sizes": [int(v) for v in model.n_obs],
                 "layout": model.group_data, "step_seconds": step_seconds(model)}
        if model.group_data == "moments":
            entry["step_seconds_rows_layout"] = step_seconds(FormulaModel(terms, family, group_data="rows"))
        if not args.steps_only:
            entry["fit"] = run_case(name, args, out)
        results[name] = entry
        (out / "partial.json").write_text(__import__("json").dumps(results, indent=1))
    emit({"benchmark": "data_scale", "cases": results}, device)


if __name__ == "__main__":
    main()
