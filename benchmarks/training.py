"""Training throughput: simulated data sets per second through fit() (online, default networks).

Usage: python benchmarks/training.py [--device cuda] [--threads 2] [--batch-size 128]
Prints one JSON object with datasets_per_second.
"""

from __future__ import annotations

import time

from _common import emit, parser, setup
from amortbayes import PosteriorAmortizer, TrainSettings, fit
from amortbayes.models import get_model


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--model", default="conjugate_gaussian")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--steps", type=int, default=300)
    args = p.parse_args()
    device = setup(args)
    model = get_model(args.model)
    amortizer = PosteriorAmortizer(model)
    settings = TrainSettings(epochs=3, iterations_per_epoch=args.steps // 3, batch_size=args.batch_size)
    t0 = time.perf_counter()
    history = fit(amortizer, model, settings=settings, device=args.device, progress=False)
    seconds = time.perf_counter() - t0
    n = settings.epochs * settings.iterations_per_epoch * settings.batch_size
    emit(
        {
            "model": args.model,
            "batch_size": args.batch_size,
            "steps": settings.epochs * settings.iterations_per_epoch,
            "datasets": n,
            "seconds": round(seconds, 2),
            "datasets_per_second": round(n / seconds, 1),
            "final_val_loss": round(float(history["val_loss"].iloc[-1]), 4),
        },
        device,
    )


if __name__ == "__main__":
    main()
