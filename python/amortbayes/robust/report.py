"""How robust an amortizer is: attacked-posterior KL and coverage over radii, and the accuracy-robustness trade-off.

:func:`robustness_report` simulates data sets with known parameters, attacks each at every
radius (:mod:`amortbayes.robust.attack`) and reports, per radius, the KL between clean and
attacked posteriors and the *expected coverage* of the attacked posteriors: the fraction of
simulations whose true (global) parameter lies in the attacked posterior's central credible
interval, per nominal level (:func:`amortbayes.diagnostics.expected_coverage`).  A robust
amortizer keeps a small KL and coverage near nominal; an attacked unregularized one typically
becomes over-confident and wrong (coverage far below nominal).  ``eps = 0`` is the clean row.

:func:`robustness_tradeoff` puts amortizers trained with different regularization strengths
side by side: held-out NLL (accuracy) against attacked KL and coverage (robustness).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch

from amortbayes.diagnostics.calibration import expected_coverage
from amortbayes.robust.attack import attack_target, check_eps, check_norm, kl_estimate, one_eps
from amortbayes.robust.targets import _unwrap, target_from_batch

__all__ = ["RobustnessReport", "robustness_report", "robustness_tradeoff"]

LEVELS = tuple(round(0.05 * i, 2) for i in range(1, 20))  # 0.05, 0.10, ..., 0.95


@dataclasses.dataclass
class RobustnessReport:
    """The result of :func:`robustness_report`.

    Attributes:
        summary: one row per radius (``eps = 0``: clean): ``eps``, ``norm``, ``kl_mean``,
            ``kl_median``, ``kl_q90``, ``coverage_50``, ``coverage_90``, ``coverage_error``
            (mean of coverage minus level over 0.05 ... 0.95: negative is over-confident),
            ``nonfinite_draws`` (attacked draws that overflowed; they count as draws at infinity).
        coverage: long frame ``eps``, ``parameter``, ``level``, ``coverage``.
        kl: long frame ``eps``, ``dataset``, ``kl``, ``kl_se``.
    """

    summary: pd.DataFrame
    coverage: pd.DataFrame
    kl: pd.DataFrame

    def plot(self, path: Any = None):
        """KL against radius and the expected-coverage curves (:func:`amortbayes.plots.plot_robustness`)."""
        from amortbayes.plots import plot_robustness

        return plot_robustness(self, path=path)

    def __repr__(self) -> str:
        return "RobustnessReport\n" + self.summary.to_string(index=False, float_format=lambda v: f"{v:.3g}")


def _simulations(model_or_batch: Any, n_sims: int, seed: int) -> dict[str, torch.Tensor]:
    if isinstance(model_or_batch, Mapping):
        return {k: torch.as_tensor(v) for k, v in model_or_batch.items()}
    if not hasattr(model_or_batch, "simulate"):
        raise TypeError("give a model (with simulate()) or a batch of simulations (a dict such as model.simulate returns)")
    return model_or_batch.simulate(int(n_sims), torch.Generator().manual_seed(int(seed)))


def robustness_report(amortizer: Any, model_or_batch: Any, eps: Any = (0.1, 0.25, 0.5, 1.0), *, norm: str = "l2",
                      n_sims: int = 100, steps: int = 50, draws: int = 64, eval_draws: int = 500,
                      columns: Sequence[str] | None = None, levels: Sequence[float] = LEVELS,
                      seed: int = 0) -> RobustnessReport:
    """Attack ``n_sims`` simulated data sets at each radius; KL and expected coverage of the attacked posteriors.

    Args:
        amortizer: a posterior or multilevel (rows layout) amortizer, or a formula fit's.
        model_or_batch: the model to simulate from (its prior predictive), or a batch of simulations.
        eps: radii in standardized units (each > 0); a clean row ``eps = 0`` is added.
        norm: ``"l2"`` or ``"linf"``.
        n_sims: simulations (when a model is given).
        steps, draws: the attack's gradient steps and Monte Carlo draws (:func:`amortbayes.robust.attack`).
        eval_draws: draws of each attacked posterior for its KL and coverage.
        columns: the data columns that may be perturbed (default: all).
        levels: nominal levels of the coverage.
        seed: seeds simulation, attacks and draws.

    Raises:
        ValueError: a radius that is not positive, an unknown norm or column.
    """
    radii = check_eps(eps)
    norm = check_norm(norm)
    net = _unwrap(amortizer)
    batch = _simulations(model_or_batch, n_sims, seed)
    dev = next(net.parameters()).device
    batch = {k: v.to(dev) for k, v in batch.items()}
    target = target_from_batch(net, batch, columns)
    truth = batch["theta_global"].cpu().numpy()
    names = list(net.info.parameter_names)
    gen = torch.Generator().manual_seed(int(seed) + 1)
    rows, cov_frames, kl_frames = [], [], []
    was_training = net.training
    net.eval()
    try:
        for e in [0.0, *radii]:
            if e == 0.0:
                delta = torch.zeros_like(target.free)
                kl, se = np.zeros(truth.shape[0]), np.zeros(truth.shape[0])
            else:
                delta = attack_target(target, e, norm=norm, steps=steps, draws=draws, generator=gen)
                kl, se = kl_estimate(target, delta, eval_draws, gen)
            draws_attacked = target.sample(delta, eval_draws, gen).astype(np.float64)
            # an attack can push a draw of a positive parameter to overflow: it counts as a draw at infinity
            nonfinite = int((~np.isfinite(draws_attacked)).sum())
            big = np.finfo(np.float64).max
            draws_attacked = np.nan_to_num(draws_attacked, nan=big, posinf=big, neginf=-big)
            cov = expected_coverage(draws_attacked, truth, levels, names)
            cov.insert(0, "eps", e)
            cov_frames.append(cov)
            kl_frames.append(pd.DataFrame({"eps": e, "dataset": np.arange(kl.shape[0]), "kl": kl, "kl_se": se}))
            by_level = cov.groupby("level")["coverage"].mean()
            rows.append({
                "eps": e, "norm": norm, "kl_mean": float(np.mean(kl)), "kl_median": float(np.median(kl)),
                "kl_q90": float(np.quantile(kl, 0.9)),
                "coverage_50": _at(by_level, 0.5), "coverage_90": _at(by_level, 0.9),
                "coverage_error": float((by_level - by_level.index.to_numpy()).mean()),
                "nonfinite_draws": nonfinite,
            })
    finally:
        net.train(was_training)
    return RobustnessReport(pd.DataFrame(rows), pd.concat(cov_frames, ignore_index=True),
                            pd.concat(kl_frames, ignore_index=True))


def _at(by_level: pd.Series, level: float) -> float:
    hit = np.isclose(by_level.index.to_numpy(), level)
    return float(by_level[hit].iloc[0]) if hit.any() else float("nan")


def held_out_nll(amortizer: Any, batch: Mapping[str, torch.Tensor], chunk: int = 512) -> float:
    """Mean negative log posterior density of the true parameters over simulations (``fit()``'s validation loss)."""
    from amortbayes.train import _evaluate

    net = getattr(amortizer, "amortizer", amortizer)
    was_training = net.training
    try:
        return _evaluate(net, dict(batch), chunk, next(net.parameters()).device)
    finally:
        net.train(was_training)


def robustness_tradeoff(amortizers: Mapping[Any, Any], model_or_batch: Any, eps: float = 0.5, *,
                        norm: str = "l2", n_sims: int = 100, seed: int = 0, **kwargs: Any) -> pd.DataFrame:
    """Accuracy against robustness of amortizers trained with different regularization (e.g. a beta sweep).

    All amortizers are scored on the same simulations.  Returns one row per amortizer:
    ``label``, ``beta`` (its :class:`~amortbayes.robust.FIMTrace` weight, 0 without one),
    ``nll`` (held-out negative log posterior density of the true parameters, on the networks'
    standardized scale: comparable between amortizers of one model with the same
    standardization, as :func:`amortbayes.fit` with the same seed learns it), ``kl_mean``,
    ``kl_median`` at ``eps`` and the attacked ``coverage_error``; plot with
    :func:`amortbayes.plots.plot_robustness_tradeoff`.
    """
    e = one_eps(eps, "robustness_tradeoff")
    if not amortizers:
        raise ValueError("give at least one amortizer")
    batch = _simulations(model_or_batch, n_sims, seed)
    rows = []
    for label, amortizer in amortizers.items():
        reg = getattr(_unwrap(amortizer), "regularizer", None)
        report = robustness_report(amortizer, batch, (e,), norm=norm, seed=seed, **kwargs)
        attacked = report.summary.iloc[-1]
        rows.append({"label": label, "beta": float(reg.beta) if reg is not None else 0.0,
                     "nll": held_out_nll(amortizer, batch), "kl_mean": attacked["kl_mean"],
                     "kl_median": attacked["kl_median"], "coverage_error": attacked["coverage_error"],
                     "clean_coverage_error": report.summary.iloc[0]["coverage_error"]})
    return pd.DataFrame(rows)
