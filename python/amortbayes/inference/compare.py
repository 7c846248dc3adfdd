"""Model comparison of joint amortizers on one data set: marginal likelihoods, Bayes factors, model probabilities, ELPD.

For models ``M_1..M_K`` trained as :class:`~amortbayes.amortizers.JointAmortizer` (each a
posterior and a normalized surrogate likelihood), every quantity comes from the amortizers in
seconds: the log marginal likelihoods ``log p(x | M_k)`` with their Monte Carlo SEs, the log
Bayes factors against the model with the largest one, the posterior model probabilities under
equal prior model probabilities (``p(M_k | x) = p(x | M_k) / sum_l p(x | M_l)``) and the
PSIS-LOO ELPD with its SE, and the ELPD difference to the best model with the SE of the
pointwise differences (as ``loo::loo_compare``).

References:
    Kass & Raftery (1995). Bayes factors. JASA.
    Vehtari, Gelman & Gabry (2017). Practical Bayesian model evaluation using leave-one-out
    cross-validation and WAIC. Statistics and Computing.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

__all__ = ["compare_models"]


def compare_models(amortizers: dict[str, Any], data: Any, *, n: int = 4000, models: dict[str, Any] | None = None,
                   seed: int | None = 0) -> pd.DataFrame:
    """Compare joint amortizers of competing models on one data set; one row per model, best ELPD first.

    Args:
        amortizers: ``{name: JointAmortizer}`` of at least two models of the same data columns.
        data: one data set.
        n: posterior draws per model.
        models: ``{name: model}`` whose ``log_prior`` enters the evidence (default: each
            amortizer's built-in model).
        seed: seed of the draws.

    Returns:
        Columns ``log_ml``, ``log_ml_se``, ``log_bf`` (against the largest evidence),
        ``post_prob``, ``elpd_loo``, ``elpd_se``, ``elpd_diff``, ``se_diff``, ``max_khat``.

    Raises:
        TypeError: an amortizer without a likelihood network.
        ValueError: fewer than two models.
    """
    from amortbayes.amortizers.joint import JointAmortizer

    if not isinstance(amortizers, dict) or len(amortizers) < 2:
        raise ValueError("compare_models() needs a dict of at least two named amortizers")
    for name, a in amortizers.items():
        if not isinstance(a, JointAmortizer):
            raise TypeError(f"model {name!r}: a {type(a).__name__} has no likelihood network, so it has no marginal "
                            "likelihood or ELPD of its own; train a JointAmortizer")
    models = models or {}
    rows, pointwise = {}, {}
    for name, a in amortizers.items():
        evidence, loo = a.evidence_and_loo(data, n, model=models.get(name), seed=seed)  # one set of draws for both
        pointwise[name] = loo["pointwise"]["elpd"].to_numpy()
        rows[name] = {"log_ml": evidence["log_ml"], "log_ml_se": evidence["mc_se"], "elpd_loo": loo["elpd"],
                      "elpd_se": loo["se"], "max_khat": loo["max_khat"]}
    out = pd.DataFrame.from_dict(rows, orient="index")
    out["log_bf"] = out["log_ml"] - out["log_ml"].max()
    out["post_prob"] = np.exp(out["log_bf"]) / np.exp(out["log_bf"]).sum()
    best = out["elpd_loo"].idxmax()
    diffs = {k: pointwise[k] - pointwise[best] for k in out.index}
    out["elpd_diff"] = [float(diffs[k].sum()) for k in out.index]
    out["se_diff"] = [0.0 if k == best else float(np.sqrt(d.size * d.var(ddof=1))) for k, d in diffs.items()]
    out.index.name = "model"
    cols = ["log_ml", "log_ml_se", "log_bf", "post_prob", "elpd_loo", "elpd_se", "elpd_diff", "se_diff", "max_khat"]
    return out[cols].sort_values("elpd_loo", ascending=False)
