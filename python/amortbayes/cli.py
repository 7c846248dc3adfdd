"""The ``amortbayes`` command: a demo end to end, built-in models, and posterior draws from a saved amortizer."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import torch


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    try:
        return int(args.run(args) or 0)
    except (ValueError, TypeError) as err:
        print(f"amortbayes {args.command}: error: {err}", file=sys.stderr)
        return 2


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="amortbayes",
        description="Amortized Bayesian inference: train once on simulations, then posterior draws in milliseconds.",
    )
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    d = sub.add_parser("demo", help="train a built-in model, summarize a shipped observation, run SBC, write plots")
    d.add_argument("--model", default="conjugate_gaussian", help="built-in model (see `amortbayes models`)")
    d.add_argument("--out", default="amortbayes-demo", help="folder for the amortizer, checkpoints and plots")
    d.add_argument("--epochs", type=int, default=10)
    d.add_argument("--iterations", type=int, default=150, help="optimizer steps per epoch")
    d.add_argument("--batch-size", type=int, default=128)
    d.add_argument("--sbc-sims", type=int, default=300, help="simulated data sets for SBC")
    d.add_argument("--draws", type=int, default=4000, help="posterior draws for the summary")
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--device", default="cpu", help="cpu or cuda")
    d.add_argument("--resume", action="store_true", help="continue an interrupted demo from its checkpoint")
    d.add_argument("--quiet", action="store_true", help="no progress bar")
    d.set_defaults(run=_demo)

    m = sub.add_parser("models", help="list the built-in models with their parameters and data columns")
    m.set_defaults(run=_models)

    s = sub.add_parser("sample", help="posterior draws for a CSV data set from a saved amortizer")
    s.add_argument("amortizer", help="folder written by amortbayes.save() or `amortbayes demo`")
    s.add_argument("data", help="CSV file with one column per observed variable")
    s.add_argument("--draws", type=int, default=4000)
    s.add_argument("--seed", type=int, default=None)
    s.add_argument("--output", help="write the draws to this CSV instead of printing a summary")
    s.set_defaults(run=_sample)
    return p


def _models(args: argparse.Namespace) -> int:
    from amortbayes.models import MODELS

    for name, cls in MODELS.items():
        model = cls()
        info = model.info
        extra = ""
        if info.local_parameter_names:
            extra = f"; local parameters {list(info.local_parameter_names)}; J in {list(info.n_groups)}"
        print(f"{name}: parameters {list(info.parameter_names)}{extra}; data columns {list(info.data_names)}; "
              f"N in {list(info.n_obs)}")
        print(f"    {(cls.__doc__ or '').strip().splitlines()[0]}")
    return 0


def _sample(args: argparse.Namespace) -> int:
    from amortbayes.amortizers import summarize_draws
    from amortbayes.io import load

    amortizer = load(args.amortizer)
    data = pd.read_csv(args.data)
    draws = amortizer.sample(data, args.draws, seed=args.seed)
    if args.output:
        draws.to_csv(args.output, index=False)
        print(f"wrote {len(draws)} draws to {args.output}")
    else:
        print(summarize_draws(draws).round(3).to_string())
    return 0


def _demo(args: argparse.Namespace) -> int:
    from amortbayes import diagnostics, plots
    from amortbayes.amortizers import PosteriorAmortizer, summarize_draws
    from amortbayes.io import save
    from amortbayes.models import example_data, get_model
    from amortbayes.train import TrainSettings, fit

    # small networks: one thread is as fast as two and immune to oversubscription
    torch.set_num_threads(1)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    model = get_model(args.model)
    info = model.info
    if info.local_parameter_names:
        raise ValueError(f"the demo trains single-level models; {args.model!r} is multilevel "
                         "(see benchmarks/multilevel.py)")
    print(f"amortbayes demo: model {info.name!r}, parameters {list(info.parameter_names)}, "
          f"data sets of N in {list(info.n_obs)} rows of {list(info.data_names)}")

    amortizer = PosteriorAmortizer(model)
    settings = TrainSettings(epochs=args.epochs, iterations_per_epoch=args.iterations, batch_size=args.batch_size)
    t0 = time.perf_counter()
    history = fit(amortizer, model, settings=settings, checkpoint_dir=out / "checkpoint", resume=args.resume,
                  device=args.device, seed=args.seed, progress=not args.quiet)
    train_s = time.perf_counter() - t0
    amortizer.to("cpu")
    save(amortizer, out / "amortizer")
    print(f"trained on {args.epochs * args.iterations * args.batch_size:,} simulations in {train_s:.1f} s "
          f"(validation loss {history.loc[history['kept'], 'val_loss'].iloc[0]:.3f} at the kept epoch); saved to {out / 'amortizer'}")

    # posterior for the shipped observation
    theta_true, x = example_data(model)
    t0 = time.perf_counter()
    draws = amortizer.sample(x, args.draws, seed=args.seed)
    sample_ms = 1000 * (time.perf_counter() - t0)
    table = summarize_draws(draws)
    table.insert(0, "true", theta_true)
    reference = None
    if hasattr(model, "posterior"):
        mean, sd = model.posterior(x)
        table["exact_mean"], table["exact_sd"] = mean[0], sd[0]
        reference = mean[0] + sd[0] * np.random.default_rng(args.seed).standard_normal((args.draws, len(sd[0])))
    elif hasattr(model, "reference_posterior"):
        reference = model.reference_posterior(x, args.draws, seed=args.seed)
    print(f"\nposterior for the shipped observation ({x.shape[0]} rows; {args.draws} draws in {sample_ms:.1f} ms):")
    print(table.round(3).to_string())
    if reference is not None and hasattr(model, "reference_posterior"):
        score = diagnostics.c2st(draws.to_numpy(), reference, max_samples=4000)
        print(f"C2ST against exact posterior draws: {score:.3f} (0.5 = indistinguishable)")

    # simulation-based calibration on held-out simulations
    held_out = model.simulate(args.sbc_sims, torch.Generator().manual_seed(args.seed + 10_000))
    sbc_draws = amortizer.sample_array({"x": held_out["x"], "mask": held_out["mask"]}, 200, seed=args.seed)
    truth = held_out["theta_global"].numpy()
    names = list(info.parameter_names)
    sbc = diagnostics.sbc_check(sbc_draws, truth, names)
    rec = diagnostics.recovery(sbc_draws, truth, names)
    print(f"\nsimulation-based calibration on {args.sbc_sims} held-out data sets (99 % simultaneous bands):")
    print(sbc.merge(rec, on="parameter").round(3).to_string(index=False))

    plots.plot_loss(history, path=out / "loss.png")
    plots.plot_sbc_ecdf(sbc_draws, truth, names, path=out / "sbc_ecdf.png")
    plots.plot_sbc_histogram(sbc_draws, truth, names, path=out / "sbc_histogram.png")
    plots.plot_recovery(sbc_draws, truth, names, path=out / "recovery.png")
    plots.plot_coverage(sbc_draws, truth, parameter_names=names, path=out / "coverage.png")
    plots.plot_posterior_pairs(draws, reference=reference, path=out / "posterior.png",
                               labels=("amortized", "exact"))
    print(f"\nplots written to {out.resolve()}: loss.png sbc_ecdf.png sbc_histogram.png recovery.png "
          f"coverage.png posterior.png")
    if not bool(sbc["passed"].all()):
        failed = sbc.loc[~sbc["passed"], "parameter"].tolist()
        print(f"warning: SBC flags {failed}; train longer (--epochs) before trusting these posteriors")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
