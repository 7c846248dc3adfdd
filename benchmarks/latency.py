"""Posterior latency: 1,000 draws for one data set, and for 100 data sets in one call (10 parameters, 10-D data).

Usage: python benchmarks/latency.py [--device cuda] [--threads 2] [--flow spline|affine] [--multilevel]
Prints one JSON object. Targets (2-core CPU): one data set < 20 ms, 100 data sets < 300 ms.
--multilevel times the hierarchical linear model's default two-level amortizer instead (the
network of benchmarks/multilevel.py, untrained: the cost does not depend on the weights):
J = 100 groups of 10 rows with 1,000 draws (target < 100 ms), and sleepstudy's 18 groups
with 4,000 draws, plain and importance-sampled.
"""

from __future__ import annotations

import numpy as np
import torch

from _common import emit, median_ms, parser, setup
from amortbayes import FlowSettings, PosteriorAmortizer, PosteriorSettings
from amortbayes.models import ConjugateGaussian


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--flow", default="spline", choices=["spline", "affine"])
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--multilevel", action="store_true", help="time the two-level amortizer (J = 100, sleepstudy)")
    args = p.parse_args()
    device = setup(args)
    if args.multilevel:
        emit(_multilevel(args, device), device)
        return
    model = ConjugateGaussian(dim=10, n_obs=(10, 100))  # 10 parameters, 10-dimensional observations
    amortizer = PosteriorAmortizer(model, PosteriorSettings(flow=FlowSettings(kind=args.flow)))
    amortizer.adapt(model.simulate(512, torch.Generator().manual_seed(0)))
    amortizer.to(device).eval()
    rng = np.random.default_rng(0)
    one = rng.normal(size=(50, 10)).astype(np.float32)
    many = rng.normal(size=(100, 50, 10)).astype(np.float32)
    result = {
        "model": "conjugate_gaussian(dim=10)",
        "parameters": 10,
        "data_dim": 10,
        "flow": args.flow,
        "draws_1000_one_dataset_ms": round(median_ms(lambda: amortizer.sample_array(one, 1000), args.repeats, device), 2),
        "draws_1000_x100_datasets_ms": round(
            median_ms(lambda: amortizer.sample_array(many, 1000), max(5, args.repeats // 4), device), 2
        ),
        "log_prob_1000_one_dataset_ms": round(
            median_ms(lambda: amortizer.log_prob(rng.normal(size=(1000, 10)), one), args.repeats, device), 2
        ),
    }
    emit(result, device)


def _multilevel(args, device) -> dict:
    import warnings

    from amortbayes import MultilevelAmortizer
    from amortbayes.data import load_sleepstudy
    from amortbayes.models import HierarchicalLinear

    model = HierarchicalLinear()
    amortizer = MultilevelAmortizer(model)
    amortizer.adapt(model.simulate(1024, torch.Generator().manual_seed(0)))
    amortizer.to(device).eval()
    big = model.simulate(1, torch.Generator().manual_seed(5), n_groups=100, n_obs=10)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # J = 100 lies outside the trained range [4, 40]
        big_data = amortizer.prepare(big)
        sleep = amortizer.prepare(load_sleepstudy(), group="Subject", columns={"x": "Days", "y": "Reaction"})
        return {
            "model": "hierarchical_linear, default MultilevelAmortizer settings",
            "j100_1000_draws_ms": round(median_ms(lambda: amortizer.sample_draws(big_data, 1000), args.repeats, device), 1),
            "sleepstudy_4000_draws_ms": round(median_ms(lambda: amortizer.sample_draws(sleep, 4000), args.repeats, device), 1),
            "sleepstudy_importance_4000_of_8000_ms": round(median_ms(
                lambda: amortizer.importance_draws(sleep, model, 4000, proposals=8000, importance=4, warn=False),
                max(3, args.repeats // 4), device), 1),
        }


if __name__ == "__main__":
    main()
