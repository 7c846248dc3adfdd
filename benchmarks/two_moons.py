"""Two moons at a fixed simulation budget: offline NPE training, then C2ST against exact posterior draws.

Usage: python benchmarks/two_moons.py [--budget 10000] [--epochs 100] [--observations 5]
Prints one JSON object with the C2ST accuracy per reference observation and its mean
(0.5 = indistinguishable; the published NPE figure at 10,000 simulations is about 0.61), and
whether both modes are recovered (share of draws on each side of theta_1 + theta_2 = 0).
"""

from __future__ import annotations

import time

import numpy as np
import torch

from _common import emit, parser, setup
from amortbayes import PosteriorAmortizer, TrainSettings, fit
from amortbayes.diagnostics import c2st
from amortbayes.models import TwoMoons


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--budget", type=int, default=10_000)
    p.add_argument("--epochs", type=int, default=100)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--observations", type=int, default=5)
    p.add_argument("--draws", type=int, default=5_000)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    device = setup(args)
    model = TwoMoons()
    data = model.simulate(args.budget, torch.Generator().manual_seed(args.seed))
    amortizer = PosteriorAmortizer(model)
    settings = TrainSettings(epochs=args.epochs, batch_size=args.batch_size, learning_rate=args.lr,
                             validation_fraction=0.1)
    t0 = time.perf_counter()
    history = fit(amortizer, data=data, settings=settings, device=args.device, seed=args.seed, progress=False)
    train_s = time.perf_counter() - t0
    amortizer.to("cpu")
    # reference observations: simulated from prior draws with a fixed seed (as in sbi benchmarks)
    obs = model.simulate(args.observations, torch.Generator().manual_seed(1000 + args.seed))
    scores, mode_shares = [], []
    for k in range(args.observations):
        x = obs["x"][k].numpy()
        ref = model.reference_posterior(x, args.draws, seed=k)
        approx = amortizer.sample_array(x, args.draws, seed=k)
        scores.append(c2st(approx, ref, seed=k))
        mode_shares.append([float(np.mean(approx.sum(1) > 0)), float(np.mean(ref.sum(1) > 0))])
    emit({
        "model": "two_moons",
        "simulation_budget": args.budget,
        "train_seconds": round(train_s, 1),
        "final_val_loss": round(float(history["val_loss"].iloc[-1]), 4),
        "c2st": [round(s, 3) for s in scores],
        "c2st_mean": round(float(np.mean(scores)), 3),
        "share_theta_sum_positive_amortized_vs_exact": [[round(a, 3), round(b, 3)] for a, b in mode_shares],
    }, device)


if __name__ == "__main__":
    main()
