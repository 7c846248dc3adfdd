"""Posterior latency: 1,000 draws for one data set, and for 100 data sets in one call (10 parameters, 10-D data).

Usage: python benchmarks/latency.py [--device cuda] [--threads 2] [--flow spline|affine]
Prints one JSON object. Targets (2-core CPU): one data set < 20 ms, 100 data sets < 300 ms.
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
    args = p.parse_args()
    device = setup(args)
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


if __name__ == "__main__":
    main()
