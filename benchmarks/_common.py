"""Shared helpers of the benchmark scripts: device/threads arguments, timing, JSON output."""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from typing import Callable

import torch


def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads (the target machine has 2 cores)")
    return p


def training_arguments(p: argparse.ArgumentParser, *, epochs: int, iterations: int, lr: float,
                       batch_size: int = 32) -> None:
    """``--epochs``, ``--iterations`` (per epoch), ``--batch-size`` and ``--lr`` with a benchmark's defaults."""
    p.add_argument("--epochs", type=int, default=epochs)
    p.add_argument("--iterations", type=int, default=iterations)
    p.add_argument("--batch-size", type=int, default=batch_size)
    p.add_argument("--lr", type=float, default=lr)


def train_settings(args: argparse.Namespace):
    """The :class:`amortbayes.TrainSettings` of :func:`training_arguments`' arguments."""
    from amortbayes import TrainSettings

    return TrainSettings(epochs=args.epochs, iterations_per_epoch=args.iterations, batch_size=args.batch_size,
                         learning_rate=args.lr)


def setup(args: argparse.Namespace) -> torch.device:
    torch.set_num_threads(args.threads)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        sys.exit("--device cuda requested but CUDA is not available")
    return torch.device(args.device)


def median_ms(fn: Callable[[], object], repeats: int, device: torch.device, warmup: int = 3) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(1000 * (time.perf_counter() - t0))
    return statistics.median(times)


def emit(result: dict, device: torch.device) -> None:
    result["device"] = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
    result["torch"] = torch.__version__
    result["threads"] = torch.get_num_threads()
    print(json.dumps(result, indent=2))


def rounded_diagnostics(diagnostics: dict) -> dict:
    """Importance-sampling diagnostics (numbers and lists of numbers) rounded to 3 decimals for the JSON."""
    import numpy as np

    return {k: np.round(v, 3).tolist() for k, v in diagnostics.items()}


def compare_with_reference(draws, reference, names: list[str]):
    """``compare_draws`` of ``draws`` with ``reference`` on the globals ``names`` and every group-level column both have.

    Returns the table and its :func:`against_reference` metrics.
    """
    from amortbayes.reference import compare_draws

    local = [c for c in draws.columns if c not in names and c in reference.columns]
    table = compare_draws(draws, reference, parameters=names + local)
    return table, against_reference(table, draws, reference, names)


def against_reference(table, draws, reference, names: list[str]) -> dict:
    """Accuracy of ``draws`` against ``reference`` draws (Stan's) in the benchmarks' JSON keys.

    ``table`` is :func:`amortbayes.reference.compare_draws` of the two; ``names`` are the
    global parameters (means in reference SDs, SD ratios, 95 % overlap, C2ST on them).  Rows
    of ``table`` beyond ``names`` are group-level parameters, summarized by their worst mean
    difference and their range of SD ratios.
    """
    from amortbayes.diagnostics import c2st

    g = table.loc[names]
    out = {
        "global_mean_diff_in_stan_sd": g["mean_diff_in_sd"].round(3).to_dict(),
        "global_sd_ratio": g["sd_ratio"].round(3).to_dict(),
        "global_overlap_95": g["overlap_95"].round(3).to_dict(),
    }
    local = table.drop(index=names)
    if len(local):
        out["local_mean_diff_in_stan_sd_max"] = round(float(local["mean_diff_in_sd"].max()), 3)
        out["local_sd_ratio_range"] = [round(float(local["sd_ratio"].min()), 3), round(float(local["sd_ratio"].max()), 3)]
        # per group-level parameter (``name[group]`` rows): median and worst over the groups
        by = local.groupby(local.index.str.split("[").str[0], sort=False)
        out["local_by_parameter"] = {
            p: {"mean_diff_in_stan_sd_median": round(float(t["mean_diff_in_sd"].median()), 3),
                "mean_diff_in_stan_sd_max": round(float(t["mean_diff_in_sd"].max()), 3),
                "sd_ratio_median": round(float(t["sd_ratio"].median()), 3),
                "sd_ratio_range": [round(float(t["sd_ratio"].min()), 3), round(float(t["sd_ratio"].max()), 3)]}
            for p, t in by
        }
    out["c2st_global"] = round(c2st(draws[names].to_numpy(), reference[names].to_numpy(), max_samples=4000), 3)
    return out


def train_or_load(make, model, folder, args, result: dict, name: str, regularizer=None):
    """The amortizer saved in ``folder`` (of ``model``), or ``make(model)`` trained by ``fit()`` on ``train_settings(args)`` and saved.

    A new training adds ``{name}_train_seconds`` and ``{name}_final_val_loss`` to ``result``.
    """
    from amortbayes import fit, load, save

    record = folder / "training.json"
    if (folder / "config.json").exists():
        if record.exists():  # the training's numbers, from the run that trained it
            result.update(json.loads(record.read_text()))
        return load(folder, model=model)
    amortizer = make(model)
    t0 = time.perf_counter()
    history = fit(amortizer, model, settings=train_settings(args), progress=False, regularizer=regularizer)
    trained = {f"{name}_train_seconds": round(time.perf_counter() - t0, 1),
               f"{name}_final_val_loss": round(float(history["val_loss"].iloc[-1]), 4)}
    result.update(trained)
    save(amortizer, folder)
    record.write_text(json.dumps(trained))
    return amortizer
