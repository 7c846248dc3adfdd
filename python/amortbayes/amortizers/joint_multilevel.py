"""Joint amortization of a two-level model: the multilevel posterior networks and a per-group surrogate likelihood.

The rows of group ``j`` are exchangeable given its parameters ``theta_j`` and the global
ones ``(tau, sigma)``, so one likelihood network over a single row conditioned on
``(theta_j, tau, sigma)`` (standardized) is a normalized surrogate of the group likelihood,

    log p(x_j | theta_j, tau, sigma) ~= sum_i log q(x_ji | theta_j, tau, sigma),

trained beside the multilevel posterior (:class:`~amortbayes.amortizers.MultilevelAmortizer`,
Habermann et al. 2024) on the same simulations by the sum of the multilevel loss and the
rows' mean negative log density.  :meth:`MultilevelJointAmortizer.surrogate` wraps a model's
priors around that network: an object with the model's ``global_log_prior`` and
``local_log_prior`` and the network's ``log_likelihood``, which the inference procedures of
:mod:`amortbayes.inference` (importance-corrected draws, LOGO, group evidence) take in place
of the model.  A simulator without a likelihood then gets them all.

References:
    Radev et al. (2023). JANA: Jointly amortized neural approximation of complex Bayesian
    models. UAI.
    Habermann, Schmitt, Kühmichel, Bulling, Radev & Bürkner (2024). Amortized Bayesian
    Multilevel Models. arXiv:2408.13230.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
from torch import nn

from amortbayes.amortizers.multilevel import MultilevelAmortizer, MultilevelSettings, default_settings
from amortbayes.networks.flows import FlowSettings
from amortbayes.networks.likelihood import LikelihoodNetwork
from amortbayes.simulation import Batch, ModelInfo

__all__ = ["MultilevelJointAmortizer", "MultilevelJointSettings", "SurrogateLikelihood"]


@dataclasses.dataclass(frozen=True)
class MultilevelJointSettings:
    """Network settings of a :class:`MultilevelJointAmortizer`.

    Attributes:
        multilevel: the posterior networks (None: :func:`~amortbayes.amortizers.multilevel.default_settings`
            of the model, resolved and stored when the amortizer is built).
        likelihood: the likelihood flow over one row of a group.
        seed: seed of the likelihood network's weight initialisation.
    """

    multilevel: MultilevelSettings | None = None
    likelihood: FlowSettings = FlowSettings(layers=4, hidden=64)
    seed: int = 0

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> MultilevelJointSettings:
        d = dict(d)
        if d.get("multilevel") is not None:
            d["multilevel"] = MultilevelSettings.from_dict(d["multilevel"])
        d["likelihood"] = FlowSettings(**d.get("likelihood", {}))
        return cls(**d)


class MultilevelJointAmortizer(nn.Module):
    """A two-level posterior (``self.multilevel``) and a surrogate likelihood of one row given its group's parameters.

    Example:
        >>> from amortbayes.models import HierarchicalGaussian
        >>> from amortbayes import fit, TrainSettings
        >>> model = HierarchicalGaussian()
        >>> amortizer = MultilevelJointAmortizer(model)
        >>> _ = fit(amortizer, model, settings=TrainSettings(epochs=1, iterations_per_epoch=2, batch_size=8,
        ...     validation_sims=8, adapt_sims=64), progress=False)
        >>> b = model.simulate(1)
        >>> lik = amortizer.surrogate(model).log_likelihood(b["theta_global"], b["theta_local"], b["x"], b["mask"])
        >>> lik.shape == b["group_mask"].shape
        True
    """

    def __init__(self, model: Any, settings: MultilevelJointSettings | None = None):
        super().__init__()
        info = model if isinstance(model, ModelInfo) else model.info
        s = settings or MultilevelJointSettings()
        if s.multilevel is None:
            s = dataclasses.replace(s, multilevel=default_settings(model))
        if info.group_data == "moments":
            raise ValueError(f"model {info.name!r} gives its groups as moment sums; a likelihood network models rows "
                             "(build the model with group_data='rows')")
        self.info, self.settings = info, s
        self.multilevel = MultilevelAmortizer(info, s.multilevel)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(s.seed)
            self.likelihood = LikelihoodNetwork(len(info.data_names), len(info.local_parameter_names)
                                                + len(info.parameter_names), 0, s.likelihood)

    # -- training -------------------------------------------------------------------------
    def adapt(self, batch: Batch) -> None:
        """Learn the standardization of parameters, data and the likelihood network's rows."""
        self.multilevel.adapt(batch)
        self.likelihood.adapt(batch["x"], batch["mask"])

    def conditions(self, theta_global: torch.Tensor, theta_local: torch.Tensor, x: torch.Tensor,
                   mask: torch.Tensor) -> torch.Tensor:
        """The likelihood network's condition of each group, ``[z_local_j, z_global]`` ``(..., J, L + G)`` (standardized)."""
        ml = self.multilevel
        zl = ml.local_map(theta_local, ml.local_map.upper(x, mask))
        zg = ml.global_map(theta_global)
        return torch.cat([zl, zg[..., None, :].expand(*zl.shape[:-1], zg.shape[-1])], dim=-1)

    def loss(self, batch: Batch) -> torch.Tensor:
        """The multilevel loss plus the mean negative log density of the observed rows under the likelihood network."""
        x, mask, valid = batch["x"], batch["mask"], batch["group_mask"] > 0
        z = self.conditions(batch["theta_global"], batch["theta_local"], x, mask)[valid]
        rows, observed = x[valid], mask[valid]
        likelihood = -self.likelihood.log_prob_rows(rows, observed, z).sum() / observed.sum().clamp_min(1.0)
        return self.multilevel.loss(batch) + likelihood

    # -- posterior and inference ------------------------------------------------------------
    def sample_draws(self, data: Any, n: int = 1000, **kwargs: Any):
        """Posterior draws (see :meth:`MultilevelAmortizer.sample_draws`)."""
        return self.multilevel.sample_draws(data, n, **kwargs)

    def sample(self, data: Any, n: int = 1000, **kwargs: Any):
        return self.multilevel.sample(data, n, **kwargs)

    def surrogate(self, model: Any) -> SurrogateLikelihood:
        """``model``'s priors with this amortizer's likelihood network as its likelihood (for :mod:`amortbayes.inference`)."""
        return SurrogateLikelihood(self, model)

    def importance_draws(self, data: Any, model: Any, n: int = 1000, **kwargs: Any):
        """Draws importance-corrected towards the posterior under ``model``'s priors and the surrogate likelihood."""
        return self.multilevel.importance_draws(data, self.surrogate(model), n, **kwargs)

    def log_marginal_likelihood(self, data: Any, model: Any, n: int = 2000, **kwargs: Any) -> dict[str, float]:
        """``log p(x)`` of one data set under ``model``'s priors and the surrogate likelihood (importance sampling).

        The mean of :meth:`importance_draws`' raw weights (each group's likelihood estimated over
        its parameters with the local flow); returns ``log_ml``, ``mc_se``, ``pareto_k`` and ``ess``.
        """
        kwargs.setdefault("warn", False)
        kwargs.setdefault("progress", False)
        diag = self.importance_draws(data, model, n, **kwargs).diagnostics
        return {"log_ml": diag["log_evidence"], "mc_se": diag["log_evidence_mc_se"], "pareto_k": diag["pareto_k"],
                "ess": diag["ess"]}

    def logo(self, data: Any, model: Any, n: int = 1000, **kwargs: Any):
        """Leave-one-group-out ELPD with the surrogate likelihood (see :func:`amortbayes.inference.logo.logo`)."""
        return self.multilevel.logo(data, self.surrogate(model), n, **kwargs)

    def group_log_evidence(self, data: Any, model: Any, n: int = 1000, **kwargs: Any):
        """Each group's log evidence with the surrogate likelihood (see :func:`amortbayes.inference.logo.group_log_evidence`)."""
        return self.multilevel.group_log_evidence(data, self.surrogate(model), n, **kwargs)

    # -- persistence ----------------------------------------------------------------------
    def config(self) -> dict[str, Any]:
        return {"model": self.info.to_dict(), "settings": self.settings.to_dict()}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> MultilevelJointAmortizer:
        return cls(ModelInfo.from_dict(config["model"]), MultilevelJointSettings.from_dict(config["settings"]))


class SurrogateLikelihood:
    """A model's priors with a :class:`MultilevelJointAmortizer`'s likelihood network in place of its likelihood.

    It has what the inference procedures ask of a model: ``global_log_prior`` and
    ``local_log_prior`` (the model's) and ``log_likelihood(theta_global (..., G),
    theta_local (..., J, L), x (..., J, N, F), mask (..., J, N)) -> (..., J)`` (the network's,
    broadcast like the models' own).  It has none of a model's closed forms, so every group's
    evidence is estimated by importance sampling over its parameters.
    """

    def __init__(self, amortizer: MultilevelJointAmortizer, model: Any):
        for name in ("global_log_prior", "local_log_prior"):
            if not callable(getattr(model, name, None)):
                raise ValueError(f"the surrogate needs the model's prior densities: {type(model).__name__} has no "
                                 f"{name}()")
        self.amortizer, self.model, self.info = amortizer, model, amortizer.info

    def global_log_prior(self, theta_global: torch.Tensor) -> torch.Tensor:
        return self.model.global_log_prior(theta_global)

    def local_log_prior(self, theta_global: torch.Tensor, theta_local: torch.Tensor) -> torch.Tensor:
        return self.model.local_log_prior(theta_global, theta_local)

    def log_likelihood(self, theta_global: torch.Tensor, theta_local: torch.Tensor, x: torch.Tensor,
                       mask: torch.Tensor) -> torch.Tensor:
        net = self.amortizer
        dev = next(net.parameters()).device
        out_dtype = theta_global.dtype if theta_global.is_floating_point() else torch.float32
        tg, tl = theta_global.to(dev, torch.float32), theta_local.to(dev, torch.float32)
        x, mask = x.to(dev, torch.float32), mask.to(dev, torch.float32)
        batch = torch.broadcast_shapes(tg.shape[:-1] + (1,), tl.shape[:-1], x.shape[:-2], mask.shape[:-1])
        tl = tl.expand(*batch, tl.shape[-1])
        tg = tg[..., None, :].expand(*batch, tg.shape[-1])[..., 0, :]
        x, mask = x.expand(*batch, *x.shape[-2:]), mask.expand(*batch, mask.shape[-1])
        with torch.no_grad():
            z = net.conditions(tg, tl, x, mask)
            n, f = x.shape[-2:]
            lp = net.likelihood.log_prob_rows(x.reshape(-1, n, f), mask.reshape(-1, n), z.reshape(-1, z.shape[-1]))
        return lp.sum(-1).reshape(batch).to(out_dtype)
