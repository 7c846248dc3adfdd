"""Predictions of a formula fit: brms' ``posterior_predict``, ``posterior_epred`` and ``predict`` on any data.

New data go through the fitted design (:func:`~amortbayes.formula.terms.new_terms`: the
training data's factor levels and ``scale()`` statistics); a level of the grouping factor the
fit has draws for uses those draws, a new level draws its effects from the population
(``r ~ MVN(0, Sigma)`` per posterior draw, brms' ``sample_new_levels = "gaussian"``).  The
response column may be absent from new data (it is not read).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import torch

from amortbayes.formula.terms import new_terms

# a response value inside every family's support, for new data without a response column
_PLACEHOLDER = {"lognormal": 1.0}


def _new_terms(fit: Any, newdata: pd.DataFrame | None):
    """The parsed ``newdata`` (or the fit's own data) through the fitted design."""
    if newdata is None:
        return fit.terms
    if not isinstance(newdata, pd.DataFrame):
        raise TypeError(f"newdata must be a pandas DataFrame, got {type(newdata).__name__}")
    t = fit.model.terms
    if t.response not in newdata.columns:
        newdata = newdata.assign(**{t.response: _PLACEHOLDER.get(fit.model.family.name, 0.0)})
    if t.group not in newdata.columns:
        raise ValueError(f"newdata needs the grouping factor {t.group!r} (a new level is drawn from the population)")
    return new_terms(t, newdata)


def linear_predictor(fit: Any, newdata: pd.DataFrame | None = None, *, seed: int = 0,
                     allow_new_levels: bool = True) -> tuple[np.ndarray, dict[str, np.ndarray], Any]:
    """``(draws, rows)`` linear predictor on the link scale, the distributional parameters per draw, and the parsed data.

    Raises:
        ValueError: a new level of the grouping factor with ``allow_new_levels=False``, or see :func:`_new_terms`.
    """
    new = _new_terms(fit, newdata)
    model, post = fit.model, fit.posterior
    theta = torch.as_tensor(post.global_draws[0], dtype=torch.float64)  # (S, G)
    local = np.asarray(post.local_draws[0], dtype=np.float64)  # (S, J, K)
    known = {lev: j for j, lev in enumerate(fit.terms.levels)}
    new_levels = [lev for lev in new.levels if lev not in known]
    if new_levels and not allow_new_levels:
        raise ValueError(f"newdata has level(s) {new_levels[:5]} of {new.group!r} the fit has no draws for; "
                         "pass allow_new_levels=True to draw them from the population")
    S = theta.shape[0]
    fitted_index = np.array([known.get(lev, -1) for lev in new.levels])
    r = local[:, np.maximum(fitted_index, 0)]  # (S, J_new, K): the fitted levels' draws
    if new_levels:
        fresh = np.flatnonzero(fitted_index < 0)
        r[:, fresh] = model.sample_local(theta, len(fresh), torch.Generator().manual_seed(seed)).numpy()
    from amortbayes.memory import BYTES_PER_TERM, require

    require(BYTES_PER_TERM * S * len(new.group_index), f"predictions of {len(new.group_index):,} rows x {S:,} draws",
            "predict fewer rows at a time (newdata= in parts) or from fewer draws (update(newdata, draws=...))")
    b = theta[:, : model.P].numpy()
    rows_r = r[:, new.group_index]  # (S, N, K)
    eta = b @ new.X.T + np.einsum("snk,nk->sn", rows_r, new.Z)
    start = model.P + model.K + len(model.cor_pairs)
    dpars = {d: theta[:, start + i].numpy() for i, d in enumerate(model.family.dpars)}
    return eta, dpars, new


def posterior_epred(fit: Any, newdata: pd.DataFrame | None = None, *, seed: int = 0,
                    allow_new_levels: bool = True) -> np.ndarray:
    """``(draws, rows)`` expected response (brms' ``posterior_epred``; binomial: trials times the probability)."""
    eta, dpars, new = linear_predictor(fit, newdata, seed=seed, allow_new_levels=allow_new_levels)
    name = fit.model.family.name
    if name in ("gaussian", "student"):
        return eta
    if name == "lognormal":
        return np.exp(eta + dpars["sigma"][:, None] ** 2 / 2)
    if name == "bernoulli":
        return 1 / (1 + np.exp(-eta))
    if name == "binomial":
        return new.trials[None, :] / (1 + np.exp(-eta))
    return np.exp(eta)  # poisson, negbinomial


def posterior_predict(fit: Any, newdata: pd.DataFrame | None = None, *, seed: int = 0,
                      allow_new_levels: bool = True) -> np.ndarray:
    """``(draws, rows)`` draws of the response from the posterior predictive (brms' ``posterior_predict``)."""
    eta, dpars, new = linear_predictor(fit, newdata, seed=seed, allow_new_levels=allow_new_levels)
    fam = fit.model.family
    gen = torch.Generator().manual_seed(seed + 1)
    eta_t = torch.as_tensor(eta)
    trials = None if new.trials is None else torch.tensor(np.asarray(new.trials, dtype=np.float64))  # a copy: pandas may hand a read-only array
    d = {k: torch.as_tensor(v)[:, None] for k, v in dpars.items()}
    return fam.simulate(eta_t, d, gen, trials).numpy()


def predict_summary(values: np.ndarray, probs: tuple[float, float] = (0.025, 0.975)) -> pd.DataFrame:
    """brms' ``predict``/``fitted`` table: Estimate, Est.Error and the two quantiles per row."""
    lo, hi = np.quantile(values, probs, axis=0)
    return pd.DataFrame({"Estimate": values.mean(0), "Est.Error": values.std(0, ddof=1),
                         f"Q{100 * probs[0]:g}": lo, f"Q{100 * probs[1]:g}": hi})
