"""Joint posterior and likelihood amortization (JANA): ``q(theta | x)`` and a normalized surrogate ``q(x | theta)``.

A :class:`~amortbayes.amortizers.PosteriorAmortizer` (summary network and posterior flow)
and a :class:`~amortbayes.networks.likelihood.LikelihoodNetwork` (a conditional flow over
one row given the parameters) are trained together on the same simulations by the sum of
their negative log densities (Radev et al. 2023, eq. 7),

    L = E_{p(theta, x)} [ -log q(theta | h(x)) - (1 / N) sum_i log q(x_i | theta) ]
        + lambda MMD^2( {h(x)}, N(0, I) ),

(for a time series each row's density also conditions on the rows before it:
``networks.likelihood``'s recurrent variant), the row term averaged over rows so that it weighs
like the posterior term whatever the data sets' sizes (the two networks share no weights, so the weighting leaves each optimum
unchanged).  The optional MMD term (:mod:`amortbayes.networks.mmd`) pushes the learned
summaries of simulated data towards a unit Gaussian, so a data set whose summary lies far
out in it is one the simulator rarely makes (:class:`SimulationGapWarning`).

With both densities normalized, every data set gets in seconds:

* the log marginal likelihood by importance sampling with the posterior network as proposal,
  ``log p(x) ~= log mean_s exp(log q(x | theta_s) + log p(theta_s) - log q(theta_s | x))``,
  ``theta_s ~ q(theta | x)`` (exact for any ``S`` when both networks are exact, consistent
  in ``S`` when only the likelihood network is), with its Monte Carlo SE by the delta method;
* PSIS-LOO ELPD from the surrogate's pointwise log likelihoods at posterior draws;
* surrogate data ``x ~ q(x | theta)`` and posterior predictive draws.

Joint calibration (JSBC, :func:`joint_sbc`): ``theta ~ p(theta)``, ``x~ ~ q(x | theta)``, draws
of ``q(theta | x~)``; if both networks are exact, the ranks of ``theta`` among the draws are
uniform; an error of either network shows as miscalibration.

References:
    Radev, Schmitt, Pratz, Picchini, Köthe & Bürkner (2023). JANA: Jointly amortized neural
    approximation of complex Bayesian models. UAI.
    Vehtari, Gelman & Gabry (2017). Practical Bayesian model evaluation using leave-one-out
    cross-validation and WAIC. Statistics and Computing.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from amortbayes.amortizers.base import inference_mode, make_generator, module_device, theta_from_user
from amortbayes.amortizers.posterior import PosteriorAmortizer, PosteriorSettings
from amortbayes.networks.flows import FlowSettings
from amortbayes.networks.likelihood import LikelihoodNetwork
from amortbayes.networks.mmd import median_bandwidth, mmd2_to_normal, mmd2_to_reference, reference_threshold
from amortbayes.networks.row_encoding import make_row_encoding
from amortbayes.simulation import Batch, ModelInfo, prepare_observed

__all__ = ["JointAmortizer", "JointSettings", "SimulationGapWarning", "joint_sbc", "log_prior_of"]

MMD_LEVEL = 0.01  # a data set's summary is flagged when about 1 % of the simulator's own lie as far out
REFERENCE_SIMS = 512  # held-out simulations whose summaries are the reference of the simulation-gap check
THETA_CHUNK = 512  # parameter draws per pass when evaluating the surrogate likelihood
DEFENSIVE_SHARE = 0.2  # of the evidence's draws from the prior when none of the network's has any likelihood


class SimulationGapWarning(UserWarning):
    """The observed data's learned summary lies far outside the summaries of simulated data (possible misspecification)."""


@dataclasses.dataclass(frozen=True)
class JointSettings:
    """Network settings of a :class:`JointAmortizer`.

    Attributes:
        posterior: the posterior network (summary network and flow).
        likelihood: the likelihood flow over one row.
        covariates: data columns the model does not simulate (a regression's predictors):
            the likelihood network is conditioned on them instead of modelling them.
        recurrent: 0 for exchangeable rows; for a time series the width of the GRU whose
            state after the previous rows conditions each row's density (the posterior's
            summary should then be ``"conv"`` or ``"recurrent"``).
        mmd_weight: weight ``lambda`` of the MMD term pulling learned summaries towards
            ``N(0, I)`` (0: none; the simulation-gap check works either way).
        seed: seed of the likelihood network's weight initialisation.
        row_encoding: how the likelihood network sees a row
            (:mod:`amortbayes.networks.row_encoding`): None takes the model's own
            ``row_encoding()`` if it has one (the diffusion models: boundary as a category,
            ``log(rt - t0)``), else the identity; ``{"kind": "identity"}`` turns it off.
    """

    posterior: PosteriorSettings = PosteriorSettings()
    likelihood: FlowSettings = FlowSettings(layers=4, hidden=64)
    covariates: tuple[str, ...] = ()
    recurrent: int = 0
    mmd_weight: float = 1.0
    seed: int = 0
    row_encoding: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        if not (isinstance(self.mmd_weight, (int, float)) and self.mmd_weight >= 0 and math.isfinite(self.mmd_weight)):
            raise ValueError(f"mmd_weight must be a finite number >= 0, got {self.mmd_weight!r}")
        object.__setattr__(self, "covariates", tuple(self.covariates))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> JointSettings:
        d = dict(d)
        d["posterior"] = PosteriorSettings.from_dict(d.get("posterior", {}))
        d["likelihood"] = FlowSettings(**d.get("likelihood", {}))
        d["covariates"] = tuple(d.get("covariates", ()))
        return cls(**d)


def log_prior_of(model: Any, info: ModelInfo) -> Any:
    """``model.log_prior`` (``theta (M, D) -> (M,)``), the model rebuilt from ``info`` when None; a clear error without one."""
    return prior_model_of(model, info).log_prior


def prior_model_of(model: Any, info: ModelInfo) -> Any:
    """The model whose prior enters the evidence: ``model``, or the built-in one rebuilt from ``info``; it must have ``log_prior``."""
    if model is None:
        from amortbayes.models import MODELS, get_model

        if info.name not in MODELS:
            raise ValueError(f"the marginal likelihood needs the prior density of model {info.name!r}, which is not "
                             "built in: pass model=")
        model = get_model(info.name, **info.config)
    if getattr(model, "log_prior", None) is None:
        raise ValueError(f"model {type(model).__name__} has no log_prior(theta): the marginal likelihood needs the "
                         "prior density")
    return model


class JointAmortizer(nn.Module):
    """Amortized posterior ``q(theta | x)`` and likelihood ``q(x | theta)`` of a single-level model.

    Rows are exchangeable given ``theta`` (or, with ``JointSettings(recurrent=H)``, a time
    series whose rows each depend on the ones before).

    Example:
        >>> from amortbayes.models import ConjugateGaussian
        >>> from amortbayes import fit, TrainSettings
        >>> model = ConjugateGaussian(dim=1)
        >>> amortizer = JointAmortizer(model)
        >>> _ = fit(amortizer, model, settings=TrainSettings(epochs=1, iterations_per_epoch=5), progress=False)
        >>> x = np.zeros((10, 1))
        >>> amortizer.sample(x, 100).shape, amortizer.log_likelihood(x, np.zeros((3, 1))).shape
        ((100, 1), (3,))
    """

    def __init__(self, model: Any, settings: JointSettings | None = None):
        super().__init__()
        info = model if isinstance(model, ModelInfo) else model.info
        self.info = info
        s = settings or JointSettings()
        if s.row_encoding is None and hasattr(model, "row_encoding"):
            s = dataclasses.replace(s, row_encoding=dict(model.row_encoding()))
        self.settings = s
        names = list(info.data_names)
        if info.contexts:
            raise ValueError("joint amortizers do not take contexts yet; train a PosteriorAmortizer of the model "
                             "with contexts")
        unknown = [c for c in s.covariates if c not in names]
        if unknown:
            raise ValueError(f"unknown covariate column(s) {unknown}; the model's data columns are {names}")
        self.covariate_columns = [names.index(c) for c in s.covariates]
        self.modelled_columns = [i for i in range(len(names)) if i not in self.covariate_columns]
        if not self.modelled_columns:
            raise ValueError("every data column is a covariate: the likelihood network has nothing to model")
        self.posterior = PosteriorAmortizer(info, s.posterior)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(s.seed)
            encoding = make_row_encoding(s.row_encoding, len(self.modelled_columns), info.parameter_names)
            self.likelihood = LikelihoodNetwork(len(self.modelled_columns), len(info.parameter_names),
                                                len(self.covariate_columns), s.likelihood, s.recurrent, encoding)
        summary = self.posterior.summary_net
        self.learned_dim = 0 if self.posterior.settings.summary == "none" else int(summary.out_features)
        # the learned summaries of held-out simulations (fit() calls calibrate() with its validation set)
        self.register_buffer("summary_reference", torch.zeros(REFERENCE_SIMS, max(self.learned_dim, 1)))
        self.register_buffer("summary_calibration", torch.zeros(3))  # reference size, kernel scale, threshold

    # -- training -------------------------------------------------------------------------
    def _split(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        cov = x[..., self.covariate_columns] if self.covariate_columns else None
        return x[..., self.modelled_columns], cov

    def adapt(self, batch: Batch) -> None:
        """Learn the standardization of parameters, data and the likelihood network's rows."""
        self.posterior.adapt(batch)
        rows, cov = self._split(batch["x"])
        self.likelihood.adapt(rows, batch["mask"], cov, batch["theta_global"])

    def loss(self, batch: Batch) -> torch.Tensor:
        """Posterior NLL + mean row NLL of the likelihood network (+ ``mmd_weight`` times the summaries' MMD^2)."""
        x, mask = batch["x"], batch["mask"]
        context = self.posterior.embed(x, mask)
        z = self.posterior.theta_map(batch["theta_global"])
        posterior = -self.posterior.flow.log_prob(z, context=context).mean()
        rows, cov = self._split(x)
        log_q = self.likelihood.log_prob_rows(rows, mask, z, cov, batch["theta_global"])
        likelihood = -log_q.sum() / mask.sum().clamp_min(1.0)
        loss = posterior + likelihood
        if self.settings.mmd_weight > 0 and self.learned_dim and x.shape[0] > 1:
            loss = loss + self.settings.mmd_weight * mmd2_to_normal(context[:, : self.learned_dim])
        return loss

    # -- posterior ------------------------------------------------------------------------
    def sample(self, data: Any, n: int = 1000, *, seed: int | None = None, parameters=None) -> pd.DataFrame:
        """Posterior draws as a DataFrame (see :meth:`PosteriorAmortizer.sample`)."""
        self.check_summaries(data)
        return self.posterior.sample(data, n, seed=seed, parameters=parameters)

    def sample_array(self, data: Any, n: int = 1000, *, seed: int | None = None, parameters=None) -> np.ndarray:
        self.check_summaries(data)
        return self.posterior.sample_array(data, n, seed=seed, parameters=parameters)

    def posterior_summary(self, data: Any, n: int = 4000, *, seed: int | None = 0) -> pd.DataFrame:
        self.check_summaries(data)
        return self.posterior.posterior_summary(data, n, seed=seed)

    def log_prob(self, theta: Any, data: Any) -> np.ndarray:
        """Posterior log density ``log q(theta | x)`` (see :meth:`PosteriorAmortizer.log_prob`)."""
        return self.posterior.log_prob(theta, data)

    # -- the summaries' distance to the training distribution -------------------------------
    @torch.no_grad()
    def calibrate(self, batch: Batch) -> None:
        """Keep the learned summaries of held-out simulations ``batch`` as the reference of :meth:`check_summaries`.

        :func:`amortbayes.fit` calls it with its validation set after training; call it again
        (with at least 20 simulations) after training by other means.
        """
        if not self.learned_dim:
            return
        was_training = self.training
        self.eval()
        x, mask = batch["x"][:REFERENCE_SIMS], batch["mask"][:REFERENCE_SIMS]
        ref = self.posterior.embed(x, mask)[:, : self.learned_dim].double()
        self.train(was_training)
        if len(ref) < 20:
            return
        l2 = median_bandwidth(ref)
        self.summary_reference.zero_()
        self.summary_reference[: len(ref)] = ref.float()
        self.summary_calibration.copy_(torch.tensor([len(ref), l2, reference_threshold(ref, l2, MMD_LEVEL)]))

    def summary_distance(self, data: Any) -> tuple[np.ndarray, float]:
        """Squared MMD of each data set's learned summary to the reference of simulated ones ``(B,)``, and its threshold.

        The threshold is the value that about :data:`MMD_LEVEL` of the simulator's own data sets
        exceed (:func:`amortbayes.networks.mmd.reference_threshold`).

        Raises:
            ValueError: the amortizer has no learned summary or was never calibrated.
        """
        r, l2, threshold = self.summary_calibration.tolist()
        if not self.learned_dim or r < 20:
            raise ValueError("summary distances need a summary network calibrated on held-out simulations "
                             "(fit() does it; or call calibrate(batch))")
        x, mask, _ = prepare_observed(data, self.info, warn_outside=False)
        with inference_mode(self):
            dev = module_device(self)
            s = self.posterior.embed(x.to(dev), mask.to(dev))[:, : self.learned_dim].double()
            d2 = mmd2_to_reference(s, self.summary_reference[: int(r)].double(), l2).cpu().numpy()
        return d2, threshold

    def check_summaries(self, data: Any) -> None:
        """Warn (:class:`SimulationGapWarning`) about data sets whose summary lies beyond the MMD threshold."""
        if not self.learned_dim or self.summary_calibration[0] < 20:
            return
        d2, threshold = self.summary_distance(data)
        far = np.flatnonzero(d2 > threshold)
        if far.size:
            which = "the data set" if d2.size == 1 else f"data set(s) {far[:5].tolist()}"
            warnings.warn(
                f"{which}: the summary's squared MMD to the summaries of simulated data is {float(d2[far].max()):.3g}, "
                f"above the threshold {threshold:.3g} that {100 * MMD_LEVEL:g} % of simulated data sets exceed; the "
                "model may not produce data like these (misspecified), and amortized results for them are unreliable",
                SimulationGapWarning, stacklevel=3)

    # -- likelihood -----------------------------------------------------------------------
    def _one_data_set(self, data: Any, caller: str) -> tuple[torch.Tensor, torch.Tensor]:
        # the likelihood is per row: only the posterior network cares about the data set's size
        x, mask, single = prepare_observed(data, self.info, warn_outside=caller != "log_likelihood")
        if not single and x.shape[0] != 1:
            raise ValueError(f"{caller}() takes one data set, got {x.shape[0]}")
        return x, mask

    def _theta(self, theta: Any) -> torch.Tensor:
        th = torch.from_numpy(theta_from_user(theta, self.info.parameter_names))
        self.posterior.theta_map.check_support(th, self.info.parameter_names)
        return th

    def log_likelihood(self, data: Any, theta: Any, *, pointwise: bool = False) -> np.ndarray:
        """Surrogate ``log q(x | theta)`` of one data set at each of ``M`` parameter values: ``(M,)``, or ``(M, N)`` per row.

        ``theta`` is ``(M, D)`` (array, dict or DataFrame with the parameter names); the density
        is normalized over the data (a density in the modelled columns given the covariates).
        """
        x, mask = self._one_data_set(data, "log_likelihood")
        th = self._theta(theta)
        out = self._log_lik_rows(x, mask, th)
        return out if pointwise else out.sum(-1)

    def _log_lik_rows(self, x: torch.Tensor, mask: torch.Tensor, th: torch.Tensor) -> np.ndarray:
        dev = module_device(self)
        rows, cov = self._split(x.to(dev))
        keep = mask[0] > 0
        rows, cov = rows[:, keep], None if cov is None else cov[:, keep]
        n = rows.shape[1]
        parts = []
        with inference_mode(self):
            for start in range(0, th.shape[0], THETA_CHUNK):
                t = th[start : start + THETA_CHUNK].to(dev)
                m = t.shape[0]
                z = self.posterior.theta_map(t)
                c = None if cov is None else cov.expand(m, -1, -1)
                lp = self.likelihood.log_prob_rows(rows.expand(m, -1, -1), torch.ones(m, n, device=dev), z, c, t)
                parts.append(lp.double().cpu())
        return torch.cat(parts).numpy()

    def simulate(self, theta: Any, n: int, *, covariates: Any = None, seed: int | None = None) -> np.ndarray:
        """Surrogate data: ``n`` rows for each of ``M`` parameter values, ``(M, n, F)`` in the model's column order.

        ``covariates (n, C)``: the covariate columns of the rows (needed when the model has covariates).
        """
        if not isinstance(n, (int, np.integer)) or n < 1:
            raise ValueError(f"number of rows must be a positive integer, got {n!r}")
        th = self._theta(theta)
        cov = None
        if self.covariate_columns:
            if covariates is None:
                raise ValueError(f"simulate() needs the covariates {list(self.settings.covariates)} of the n rows "
                                 "(covariates=, an array (n, C))")
            cov = torch.as_tensor(np.asarray(covariates, dtype=np.float32)).reshape(1, -1, len(self.covariate_columns))
            if cov.shape[1] != n:
                raise ValueError(f"covariates have {cov.shape[1]} rows for n = {n}")
        return self._simulate(th, int(n), cov, make_generator(seed)).numpy()

    def _simulate(self, th: torch.Tensor, n: int, cov: torch.Tensor | None, gen) -> torch.Tensor:
        dev = module_device(self)
        with inference_mode(self):
            z = self.posterior.theta_map(th.to(dev))
            c = None if cov is None else cov.to(dev).expand(th.shape[0], -1, -1)
            rows = self.likelihood.sample_rows(z, n, c, gen, th.to(dev)).cpu()
        out = torch.zeros(th.shape[0], n, len(self.info.data_names))
        out[..., self.modelled_columns] = rows
        if cov is not None:
            out[..., self.covariate_columns] = cov.expand(th.shape[0], -1, -1).cpu()
        return out

    def posterior_predictive(self, data: Any, n: int = 1000, *, seed: int | None = None) -> np.ndarray:
        """Posterior predictive data sets like ``data`` (same rows, same covariates): ``(n, N, F)``."""
        x, mask = self._one_data_set(data, "posterior_predictive")
        x = x[:, mask[0] > 0]
        draws = self.sample_array(data, n, seed=seed)
        _, cov = self._split(x)
        gen = make_generator(None if seed is None else seed + 1)
        return self._simulate(torch.from_numpy(draws), x.shape[1], cov, gen).numpy()

    # -- evidence and cross-validation ------------------------------------------------------
    def _weighted_draws(self, data: Any, n: int, prior_model: Any, seed: int | None, caller: str,
                        defensive: float = 0.0):
        """Posterior draws of one data set, the surrogate's pointwise log likelihoods ``(S, N)`` and, with a prior
        model, each draw's full-data log importance weight ``log q(x | theta) + log p(theta) - log r(theta)`` and its
        prior-to-proposal part ``log p(theta) - log r(theta)``.

        The proposal ``r`` is the posterior network, or with ``defensive = e > 0`` the mixture
        ``(1 - e) q(theta | x) + e p(theta)`` (a share ``e`` of the draws from the prior), whose
        weights stay finite where the network's draws all miss the likelihood's support.
        """
        x, mask = self._one_data_set(data, caller)
        self.check_summaries(data)
        m = int(round(n * defensive)) if prior_model is not None else 0
        draws = self.posterior.sample_array(data, int(n) - m, seed=seed)
        if m:
            gen = make_generator(None if seed is None else seed + 7)
            draws = np.concatenate([draws, prior_model.sample_prior(m, gen).numpy().astype(draws.dtype)])
        log_lik = self._log_lik_rows(x, mask, torch.from_numpy(draws))
        if prior_model is None:
            return log_lik, None, None
        log_q = self.posterior.log_prob(draws, data).astype(np.float64)
        log_p = np.asarray(prior_model.log_prior(torch.from_numpy(draws.astype(np.float64))), dtype=np.float64)
        if m:
            log_q = np.logaddexp(math.log1p(-defensive) + log_q, math.log(defensive) + log_p)
        log_w = log_lik.sum(-1) + log_p - log_q
        return log_lik, np.where(np.isnan(log_w), -np.inf, log_w), log_p - log_q

    def log_marginal_likelihood(self, data: Any, n: int = 4000, *, model: Any = None,
                                seed: int | None = 0) -> dict[str, float]:
        """``log p(x)`` of one data set by importance sampling with the posterior network as proposal.

        Returns ``log_ml`` (the estimate), ``mc_se`` (its Monte Carlo SE, delta method),
        ``pareto_k`` and ``ess`` of the importance weights, and ``defensive_share``: 0, or the
        share of draws taken from the prior when none of the posterior network's draws had any
        likelihood (a support bound it misses; then trust the estimate only as far as ``pareto_k``
        allows).  ``model``: the model whose prior density ``log_prior(theta)`` enters (default:
        the built-in model the amortizer was trained on; its ``sample_prior`` for the fallback).
        """
        return self.evidence_and_loo(data, n, model=model, seed=seed, loo=False)[0]

    def elpd_loo(self, data: Any, n: int = 4000, *, model: Any = None, seed: int | None = 0) -> dict[str, Any]:
        """PSIS-LOO ELPD of one data set from the surrogate's pointwise log likelihoods.

        The posterior network's draws are the proposal: each carries its full-data importance
        weight ``q(x | theta) p(theta) / q(theta | x)`` (the prior density of ``model``, default
        the built-in model trained on), so errors of the posterior network do not bias the
        estimate; each observation's leave-one-out weights divide it by ``q(x_i | theta)`` and
        are Pareto-smoothed.  A model without a prior density uses the draws as they are.
        Returns ``elpd``, ``se``, ``p_loo``, ``max_khat``, ``n_khat_above_0.7`` and
        ``pointwise`` (a DataFrame of ``observation``, ``elpd``, ``khat``).
        """
        try:
            prior_model = prior_model_of(model, self.info)
        except ValueError:
            prior_model = None
        return _loo(*self._weighted_draws(data, n, prior_model, seed, "elpd_loo"))

    def evidence_and_loo(self, data: Any, n: int = 4000, *, model: Any = None, seed: int | None = 0,
                         loo: bool = True) -> tuple[dict[str, float], dict[str, Any] | None]:
        """:meth:`log_marginal_likelihood` and (``loo=True``) :meth:`elpd_loo` from one set of draws and likelihoods."""
        prior_model = prior_model_of(model, self.info)
        log_lik, log_w, ratio = self._weighted_draws(data, n, prior_model, seed, "log_marginal_likelihood")
        defensive = 0.0
        if not np.isfinite(log_w).any() and hasattr(prior_model, "sample_prior"):
            # no network draw has any likelihood (a support bound the posterior network misses, such as
            # the diffusion model's t0 above the fastest response): a share of draws from the prior
            defensive = DEFENSIVE_SHARE
            log_lik, log_w, ratio = self._weighted_draws(data, n, prior_model, seed, "log_marginal_likelihood",
                                                         defensive)
        evidence = {**_importance_estimate(log_w), "defensive_share": defensive}
        return evidence, (_loo(log_lik, log_w, ratio) if loo else None)

    # -- persistence ----------------------------------------------------------------------
    def config(self) -> dict[str, Any]:
        return {"model": self.info.to_dict(), "settings": self.settings.to_dict()}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> JointAmortizer:
        return cls(ModelInfo.from_dict(config["model"]), JointSettings.from_dict(config["settings"]))


def _importance_estimate(log_w: np.ndarray) -> dict[str, float]:
    """``log mean exp(log_w)``, its delta-method Monte Carlo SE (``log_mean_exp``), Pareto k and ESS."""
    from amortbayes.diagnostics.importance import importance_diagnostics
    from amortbayes.diagnostics.multilevel import log_mean_exp

    log_w = np.where(np.isnan(log_w), -np.inf, log_w)
    finite = log_w[np.isfinite(log_w)]
    if finite.size == 0:
        raise ValueError("every importance weight is zero: the surrogate or the prior gives the posterior draws no "
                         "density")
    estimate, se = (float(v) for v in log_mean_exp(torch.from_numpy(log_w)))
    if finite.size < 10:  # too few draws with any weight to judge the tail: unreliable by definition
        w = np.exp(finite - finite.max())
        return {"log_ml": estimate, "mc_se": se, "pareto_k": math.inf, "ess": float(w.sum() ** 2 / (w * w).sum())}
    diag = importance_diagnostics(finite)
    return {"log_ml": estimate, "mc_se": se, "pareto_k": float(diag["pareto_k"]), "ess": float(diag["ess"])}


def _loo(log_lik: np.ndarray, log_w: np.ndarray | None, log_ratio: np.ndarray | None = None) -> dict[str, Any]:
    """PSIS-LOO summary and pointwise table of ``log_lik (S, N)`` at draws of full-data log weights ``log_w``."""
    from amortbayes.diagnostics.multilevel import elpd_summary, psis_loo

    if log_w is not None and np.isneginf(log_lik).any():
        # a draw with zero density for some rows (the diffusion surrogate's bound at t0) has full-data
        # weight 0 but may have a leave-one-out weight: log p(theta) - log q(theta | x) plus the sum
        # over the other rows, summed directly rather than as the full-data weight over q(x_i | theta)
        zero = np.isneginf(log_lik)
        finite = np.where(zero, 0.0, log_lik)
        ratio = log_ratio if log_ratio is not None else np.where(zero.any(1), -np.inf, log_w - log_lik.sum(1))
        others = finite.sum(1, keepdims=True) - finite
        log_w = np.where(zero.sum(1, keepdims=True) - zero > 0, -np.inf, np.asarray(ratio)[:, None] + others)
    pointwise = psis_loo(log_lik, log_weights=log_w)
    return {**elpd_summary(pointwise, log_lik), "pointwise": pointwise}


def joint_sbc(amortizer: JointAmortizer, model: Any, n_sims: int = 200, n_draws: int = 100, *, alpha: float = 0.01,
              seed: int = 2024):
    """Joint SBC: ``theta ~ p(theta)``, surrogate data ``x~ ~ q(x | theta)``, ranks of ``theta`` among draws of ``q(theta | x~)``.

    Data set sizes are drawn from the model's trained range.  Passes when both networks are
    calibrated; a poor likelihood network (surrogate data that do not carry ``theta``) or a
    poor posterior network shows as ranks outside the simultaneous bands.  Returns an
    :class:`~amortbayes.diagnostics.sbc.SBCResult` (``table``, ``passed``, ``plot()``).
    """
    from amortbayes.diagnostics.sbc import SBCResult, sbc_check

    if not isinstance(amortizer, JointAmortizer):
        raise TypeError(f"joint SBC needs a JointAmortizer (posterior and likelihood networks), got "
                        f"{type(amortizer).__name__}")
    if not isinstance(n_sims, (int, np.integer)) or n_sims < 20 or not isinstance(n_draws, (int, np.integer)) \
            or n_draws < 10:
        raise ValueError(f"joint_sbc() needs n_sims >= 20 and n_draws >= 10, got {n_sims!r} and {n_draws!r}")
    if amortizer.covariate_columns:
        raise ValueError("joint_sbc() simulates whole data sets from the surrogate, which needs covariates for its "
                         "rows; models with covariates are not supported yet")
    gen = torch.Generator().manual_seed(seed)
    theta = model.sample_prior(int(n_sims), gen).float()
    lo, hi = amortizer.info.n_obs
    sizes = torch.randint(lo, hi + 1, (int(n_sims),), generator=gen)
    x = amortizer._simulate(theta, int(sizes.max()), None, gen)
    mask = (torch.arange(x.shape[1])[None, :] < sizes[:, None]).float()
    data = {"x": (x * mask[..., None]).numpy(), "mask": mask.numpy()}
    draws = amortizer.posterior.sample_array(data, int(n_draws), seed=seed + 1)
    truth = theta.numpy()
    # surrogate data far beyond every training simulation (a barely trained likelihood network's
    # tail) can give non-finite draws: left out and counted, as a formula fit's SBC does
    keep = np.isfinite(draws).all(axis=(1, 2))
    if keep.sum() < max(10, len(keep) // 2):
        raise ValueError(f"joint_sbc(): only {int(keep.sum())} of {len(keep)} surrogate data sets gave finite "
                         "posterior draws; the networks are not trained enough for a calibration check")
    table = sbc_check(draws[keep], truth[keep], list(amortizer.info.parameter_names), alpha)
    return SBCResult(table, draws[keep], truth[keep], alpha, int((~keep).sum()))
