"""Multilevel AR(1) model (Habermann et al. 2024, eq. 20-21) on ChickWeight: amortized vs Stan.

Usage: python benchmarks/ar1.py [--epochs 30 --iterations 200] [--no-stan] [--out DIR] [--reuse]
Trains the AR(1) amortizer (the package's default networks) over J in 5..50 chicks (ChickWeight has 49 after dropping rows
without a lag; see amortbayes.models.ar1.chickweight_frame), fits ChickWeight, compares the
global and per-chick marginals with Stan (4 chains x 1,000 + 1,000), raw and importance-sampled
(importance_draws with --rounds adaptive rounds), and times one fit and LOGO over all chicks.
Prints one JSON object.  --reuse takes the amortizer a previous run saved in --out; Stan's fit
is kept in --out (stan.npz) and read back by a rerun.
"""

from __future__ import annotations

import time
from pathlib import Path

import pandas as pd
import torch

from _common import (compare_with_reference, emit, median_ms, parser, rounded_diagnostics, setup, train_settings,
                     training_arguments)
from amortbayes import MultilevelAmortizer, fit, load, save
from amortbayes.amortizers.multilevel import MultilevelSettings
from amortbayes.models import AR1Multilevel
from amortbayes.models.ar1 import chickweight_frame, stan_data_from_frame


def main() -> None:
    p = parser(__doc__)
    training_arguments(p, epochs=30, iterations=200, lr=1e-3)
    p.add_argument("--group-summary", default="deepset", choices=["deepset", "recurrent"],
                   help="summary network of a chick's rows (default: the package's, a DeepSet with exact "
                        "least-squares statistics; the slow SBC test uses the recurrent one)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--proposals", type=int, default=4000, help="importance proposals per round")
    p.add_argument("--importance", type=int, default=16, help="local draws per proposal and chick")
    p.add_argument("--rounds", type=int, default=4, help="importance_draws(rounds=)")
    p.add_argument("--no-stan", action="store_true")
    p.add_argument("--out", default="benchmark-ar1")
    p.add_argument("--reuse", action="store_true", help="load the amortizer and history.csv saved in --out")
    args = p.parse_args()
    device = setup(args)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    model = AR1Multilevel(n_groups=(5, 50))  # ChickWeight's 49 chicks inside the trained range
    settings = train_settings(args)
    if args.reuse:
        amortizer = load(out / "amortizer", model=model)
        history = pd.read_csv(out / "history.csv")
    else:
        amortizer = MultilevelAmortizer(model, MultilevelSettings(group_summary=args.group_summary, seed=args.seed))
        ckpt = out / "ckpt"
        history = fit(amortizer, model, settings=settings, device=args.device, checkpoint_dir=ckpt,
                      resume=(ckpt / "checkpoint.pt").exists(), progress=False, seed=args.seed)
        amortizer.to("cpu").eval()
        save(amortizer, out / "amortizer")
        history.to_csv(out / "history.csv", index=False)
    amortizer.eval()

    frame = chickweight_frame()
    data = amortizer.prepare(frame, group="Chick")
    fit_ms = median_ms(lambda: amortizer.sample_draws(data, 4000), 5, torch.device("cpu"), warmup=1)
    amortized = amortizer.sample_draws(data, 4000, seed=1).to_frame(0)
    t0 = time.perf_counter()
    loo = amortizer.logo(data, model, seed=0, progress=False)
    logo_s = time.perf_counter() - t0
    loo.to_csv(out / "logo.csv", index=False)
    t0 = time.perf_counter()
    weighted = amortizer.importance_draws(data, model, 4000, proposals=args.proposals, importance=args.importance,
                                          rounds=args.rounds, seed=1, warn=False, progress=False)
    is_s = time.perf_counter() - t0
    result = {
        "model": "ar1_multilevel (ChickWeight: 49 chicks, 478 rows, T_j 5..10)",
        "train_seconds": round(float(history["seconds"].sum()), 1),
        "train_simulations": settings.epochs * settings.iterations_per_epoch * settings.batch_size,
        "group_summary": amortizer.settings.group_summary,
        "learning_rate": settings.learning_rate,
        "final_val_loss": round(float(history["val_loss"].iloc[-1]), 3),
        "amortized_fit_ms_4000_draws": round(fit_ms, 1),
        "logo_seconds_all_49_groups": round(logo_s, 2),
        "elpd_logo": round(float(loo["elpd"].sum()), 2),
        "logo_max_mc_se": round(float(loo["mc_se"].max()), 3),
        "importance_sampled": {"seconds": round(is_s, 1), "importance": args.importance,
                               **rounded_diagnostics(weighted.diagnostics)},
    }
    if not args.no_stan:
        from amortbayes.reference import fit_stan, label_groups
        from amortbayes.simulation import group_levels

        stan = fit_stan("ar1_multilevel", stan_data_from_frame(frame, group="Chick"), chains=4, warmup=1000,
                        draws=1000, seed=1, file=out / "stan.npz")
        ref = label_groups(stan.draws, model.local_parameter_names, group_levels(frame["Chick"], drop_unused=True))
        names = list(model.parameter_names)
        result.update({"stan_seconds": round(stan.seconds, 1), "stan_max_rhat": round(stan.max_rhat, 4),
                       "speedup_fit_vs_stan": round(stan.seconds / (fit_ms / 1000), 1)})
        for key, draws in (("amortized", amortized), ("importance_sampled", weighted.to_frame(0))):
            table, metrics = compare_with_reference(draws, ref, names)
            table.to_csv(out / f"comparison_{key}.csv")
            if key == "amortized":
                result.update(metrics)
            else:
                result[key].update(metrics)
    emit(result, device)


if __name__ == "__main__":
    main()
