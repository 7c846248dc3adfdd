"""Deep ensembles of posterior amortizers: mixture draws and an approximator-sensitivity score that flags simulation gaps.

``M`` amortizers of one model (posterior amortizers of a single-level model, multilevel ones of a
two-level model), differing only in their weights' initialisation (the seed), train together through the one :func:`amortbayes.fit` on the same simulations (the
loss is the sum of the members' losses; members share no weights).  Their posteriors agree
where the simulations taught them the same answer and drift apart where the data are unlike
any simulation, so the disagreement between members is a score of how far amortized
inference is extrapolating (Elsemüller et al. 2023, section 3.3; Lakshminarayanan et al. 2017).

Disagreement of one data set: the mean over member pairs of the squared MMD between their
draws (of the global parameters for a multilevel model), on the first member's standardized parameter scale and with the kernel scaled by the
median squared distance of all members' pooled draws (so it measures disagreement relative to
the posterior's own width).  :meth:`EnsembleAmortizer.calibrate` (called by ``fit()`` with its
validation set) keeps the scores of held-out simulations; :meth:`EnsembleAmortizer.disagreement`
reports each data set's score with its percentile among them, and :meth:`check` warns
(:class:`ApproximatorGapWarning`) above the 99th.

References:
    Lakshminarayanan, Pritzel & Blundell (2017). Simple and scalable predictive uncertainty
    estimation using deep ensembles. NeurIPS.
    Elsemüller, Olischläger, Schmitt, Bürkner, Köthe & Radev (2023). Sensitivity-aware
    amortized Bayesian inference. arXiv:2310.11122.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from amortbayes.amortizers.base import draws_to_frame, make_generator, select_parameters, summarize_draws
from amortbayes.amortizers.multilevel import MultilevelAmortizer, MultilevelSettings, default_settings
from amortbayes.amortizers.posterior import PosteriorAmortizer, PosteriorSettings
from amortbayes.networks.mmd import median_bandwidth, mmd2_samples
from amortbayes.simulation import Batch, ModelInfo, Simulator

__all__ = ["ApproximatorGapWarning", "EnsembleAmortizer", "EnsembleSettings"]

CALIBRATION_SIMS = 200  # held-out simulations whose disagreement scores are the reference
SCORE_DRAWS = 300  # draws per member for a disagreement score
LEVEL = 0.99


class ApproximatorGapWarning(UserWarning):
    """The ensemble's members disagree on a data set far more than on simulated ones (amortization is extrapolating)."""


@dataclasses.dataclass(frozen=True)
class EnsembleSettings:
    """``members`` amortizers, seeds ``seed + m``.

    ``posterior``: the members' settings for a single-level model; ``multilevel`` for a
    two-level one (None: :func:`~amortbayes.amortizers.multilevel.default_settings` of the model).
    """

    members: int = 5
    posterior: PosteriorSettings = PosteriorSettings()
    multilevel: MultilevelSettings | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.members, int) or self.members < 2:
            raise ValueError(f"an ensemble needs at least 2 members, got {self.members!r}")

    def to_dict(self) -> dict[str, Any]:
        return {"members": self.members, "posterior": self.posterior.to_dict(),
                "multilevel": None if self.multilevel is None else self.multilevel.to_dict()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> EnsembleSettings:
        ml = d.get("multilevel")
        return cls(members=int(d["members"]), posterior=PosteriorSettings.from_dict(d.get("posterior", {})),
                   multilevel=None if ml is None else MultilevelSettings.from_dict(ml))


class EnsembleAmortizer(nn.Module):
    """A deep ensemble of :class:`PosteriorAmortizer` members of one single-level model.

    Example:
        >>> from amortbayes.models import ConjugateGaussian
        >>> from amortbayes import fit, TrainSettings
        >>> model = ConjugateGaussian(dim=1)
        >>> ens = EnsembleAmortizer(model, EnsembleSettings(members=2))
        >>> _ = fit(ens, model, settings=TrainSettings(epochs=1, iterations_per_epoch=5), progress=False)
        >>> ens.sample_array(np.zeros((10, 1)), 100, seed=0).shape
        (100, 1)
    """

    def __init__(self, model: Simulator | ModelInfo, settings: EnsembleSettings | None = None):
        super().__init__()
        info = model if isinstance(model, ModelInfo) else model.info
        self.info = info
        s = settings or EnsembleSettings()
        self.multilevel = bool(info.local_parameter_names)
        if self.multilevel:
            if s.multilevel is None:  # the model's default, kept in the settings so a saved ensemble rebuilds alike
                s = dataclasses.replace(s, multilevel=default_settings(model))
            members = [MultilevelAmortizer(info, dataclasses.replace(s.multilevel, seed=s.multilevel.seed + m))
                       for m in range(s.members)]
        else:
            members = [PosteriorAmortizer(info, dataclasses.replace(s.posterior, seed=s.posterior.seed + m))
                       for m in range(s.members)]
        self.settings = s
        self.members = nn.ModuleList(members)
        self.register_buffer("reference_scores", torch.zeros(CALIBRATION_SIMS))
        self.register_buffer("reference_size", torch.zeros(()))

    # -- training ---------------------------------------------------------------------------
    def adapt(self, batch: Batch) -> None:
        for m in self.members:
            m.adapt(batch)

    def loss(self, batch: Batch) -> torch.Tensor:
        """Sum of the members' NPE losses (each member's gradient is its own)."""
        return sum(m.loss(batch) for m in self.members)

    @torch.no_grad()
    def calibrate(self, batch: Batch) -> None:
        """Keep the disagreement scores of held-out simulations (``fit()`` passes its validation set)."""
        keys = ("x", "mask", "group_mask") if self.multilevel else ("x", "mask")
        data = {k: batch[k][:CALIBRATION_SIMS].cpu().numpy() for k in keys}
        if len(data["x"]) < 20:
            return
        scores = self._scores(data, seed=0)
        self.reference_scores.zero_()
        self.reference_scores[: len(scores)] = torch.from_numpy(scores).float()
        self.reference_size.fill_(len(scores))

    # -- draws ------------------------------------------------------------------------------
    def member_draws(self, data: Any, n: int = 1000, *, seed: int | None = None, context=None,
                     **kwargs: Any) -> np.ndarray:
        """Each member's draws: ``(M, n, D)`` for one data set, ``(M, B, n, D)`` for many (multilevel: the globals).

        ``kwargs`` go to a multilevel member's data preparation (``group=``).
        """
        base = 0 if seed is None else int(seed)
        if not self.multilevel:
            return np.stack([m.sample_array(data, n, seed=None if seed is None else base + i, context=context)
                             for i, m in enumerate(self.members)])
        d = self.members[0].prepare(data, **kwargs)
        draws = np.stack([m.sample_draws(d, n, seed=None if seed is None else base + i, context=context).global_draws
                          for i, m in enumerate(self.members)])
        return draws[:, 0] if draws.shape[1] == 1 and not isinstance(data, dict) else draws

    def sample_array(self, data: Any, n: int = 1000, *, seed: int | None = None,
                     parameters: Sequence[str] | None = None, context=None, **kwargs: Any) -> np.ndarray:
        """Draws of the equal-weight mixture of the members' posteriors: ``(n, D)`` or ``(B, n, D)`` (multilevel: globals)."""
        m = len(self.members)
        per = -(-int(n) // m)
        draws = self.member_draws(data, per, seed=seed, context=context, **kwargs)  # (M, [B,] per, D)
        mixed = np.concatenate(list(draws), axis=-2)  # members side by side
        rng = np.random.default_rng(None if seed is None else seed + 7919)
        mixed = np.take(mixed, rng.permutation(mixed.shape[-2])[: int(n)], axis=-2)
        cols = select_parameters(self.info.parameter_names, parameters)
        return mixed[..., cols]

    def sample(self, data: Any, n: int = 1000, *, seed: int | None = None,
               parameters: Sequence[str] | None = None, context=None) -> pd.DataFrame:
        """Mixture draws as a DataFrame (long format with ``dataset`` and ``draw`` for many data sets)."""
        cols = select_parameters(self.info.parameter_names, parameters)
        draws = self.sample_array(data, n, seed=seed, context=context)[..., cols]
        single = draws.ndim == 2
        return draws_to_frame(draws[None] if single else draws, [self.info.parameter_names[c] for c in cols], single)

    def posterior_summary(self, data: Any, n: int = 4000, *, seed: int | None = 0) -> pd.DataFrame:
        df = self.sample(data, n, seed=seed)
        return summarize_draws(df, by="dataset" if "dataset" in df.columns else None)

    # -- approximator sensitivity -------------------------------------------------------------
    def _scores(self, data: Any, seed: int | None, **kwargs: Any) -> np.ndarray:
        draws = self.member_draws(data, SCORE_DRAWS, seed=seed, **kwargs)
        if draws.ndim == 3:
            draws = draws[:, None]
        first = self.members[0].global_map if self.multilevel else self.members[0].theta_map
        with torch.no_grad():
            z = first(torch.from_numpy(draws.reshape(-1, draws.shape[-1])).float()).reshape(draws.shape)
        m, b = z.shape[0], z.shape[1]
        scores = np.zeros(b)
        for j in range(b):
            pooled = z[:, j].reshape(-1, z.shape[-1])
            idx = torch.randperm(len(pooled), generator=make_generator(0))[:400]
            l2 = median_bandwidth(pooled[idx])
            pairs = [(i, k) for i in range(m) for k in range(i + 1, m)]
            a = torch.stack([z[i, j] for i, _ in pairs])
            c = torch.stack([z[k, j] for _, k in pairs])
            scores[j] = float(mmd2_samples(a, c, l2).mean())
        return scores

    def disagreement(self, data: Any, *, seed: int | None = 0, **kwargs: Any) -> pd.DataFrame:
        """Each data set's disagreement score and its percentile among held-out simulations'.

        Returns a DataFrame of ``dataset``, ``score``, ``percentile`` (NaN when never
        calibrated) and ``flagged`` (above the 99th percentile of the simulations').
        ``kwargs`` go to a multilevel member's data preparation (``group=``).
        """
        scores = self._scores(data, seed, **kwargs)
        r = int(self.reference_size)
        ref = self.reference_scores[:r].numpy()
        pct = np.array([100.0 * np.mean(ref < s) for s in scores]) if r else np.full(len(scores), np.nan)
        threshold = float(np.quantile(ref, LEVEL)) if r else np.inf
        return pd.DataFrame({"dataset": np.arange(len(scores)), "score": scores, "percentile": pct,
                             "flagged": scores > threshold})

    def check(self, data: Any, **kwargs: Any) -> pd.DataFrame:
        """:meth:`disagreement`, warning (:class:`ApproximatorGapWarning`) about flagged data sets."""
        table = self.disagreement(data, **kwargs)
        if table["flagged"].any():
            worst = table.loc[table["score"].idxmax()]
            warnings.warn(
                f"the ensemble's members disagree on {int(table['flagged'].sum())} data set(s) more than on "
                f"{100 * LEVEL:g} % of simulated ones (score {worst['score']:.3g}, above the simulations' "
                f"{100 * LEVEL:g}th percentile {float(np.quantile(self.reference_scores[: int(self.reference_size)].numpy(), LEVEL)):.3g}); "
                "the data may be unlike anything the simulator makes", ApproximatorGapWarning, stacklevel=2)
        return table

    # -- persistence ------------------------------------------------------------------------
    def config(self) -> dict[str, Any]:
        return {"model": self.info.to_dict(), "settings": self.settings.to_dict()}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> EnsembleAmortizer:
        return cls(ModelInfo.from_dict(config["model"]), EnsembleSettings.from_dict(config["settings"]))
