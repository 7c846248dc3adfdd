"""A pilot estimate of regression coefficients that the global flow is centred and scaled on.

Under wide (brms-like, data-scaled) priors a regression coefficient's posterior is a few
hundredths of its prior's width; in the flow's prior-standardized space a network must then
place a narrow bump to within a hundredth of a unit, and at a budget of 10,000 steps it did
not (formula benchmark: raw draws 2-12 posterior SDs off on epilepsy and sleepstudy).  A
pilot removes that burden: for each data set the coefficients of a pooled GLM, its groups
ignored, are fitted exactly by a few penalized IRLS steps (the penalty is a Gaussian with the
prior's mean and SD, so separation, all-zero counts or collinear designs stay finite), and
their standard errors are taken as the larger of the model-based and the cluster-robust
(sandwich over groups) ones, which track the between-group variation a multilevel posterior
has.  The flow then models ``(z - m(x)) / s(x)`` (:class:`ContextShift`), a quantity of order
one whatever the prior, and sees ``m`` and ``log s`` as features (so it can still shrink
towards the prior when the data are weak).

Families (canonical links; the dispersion from the residuals where there is one):
``gaussian`` (identity, exact in one step; also student, and lognormal on log y), ``poisson``
(log; also negbinomial as quasi-Poisson, the sandwich absorbing overdispersion) and
``binomial`` (logit, with a trials column or one trial per row).

References:
    McCullagh & Nelder (1989). Generalized Linear Models, 2nd ed., ch. 2 (IRLS).
    Liang & Zeger (1986). Longitudinal data analysis using generalized linear models.
    Biometrika 73 (the cluster-robust variance).
"""

from __future__ import annotations

import dataclasses
import math

import torch
from nflows.transforms.base import Transform

PILOT_FAMILIES = ("gaussian", "poisson", "binomial")
PILOT_ITERATIONS = 8  # IRLS steps of the non-gaussian families at most (R's glm() needs 4-6 on typical data)
PILOT_TOLERANCE = 1e-6  # they stop once no coefficient of any data set moves by more than this, relatively
ETA_BOUND = 30.0  # linear predictors kept in +-30 during IRLS (exp(30) = 1e13 counts)
MAX_Z = 20.0  # pilot locations in the prior-standardized space are kept within +-20


@dataclasses.dataclass(frozen=True)
class PilotSettings:
    """Which data columns hold the design and the response, and which global parameters are its coefficients.

    Attributes:
        family: one of :data:`PILOT_FAMILIES`.
        design: data columns of the fixed-effects design matrix.
        response: data column of the response (log y for a lognormal model).
        parameters: global parameters (flow coordinates) of the coefficients, in ``design``'s order.
        trials: data column of a binomial response's trials (None: one trial per row).
    """

    family: str
    design: tuple[int, ...]
    response: int
    parameters: tuple[int, ...]
    trials: int | None = None

    def __post_init__(self) -> None:
        if self.family not in PILOT_FAMILIES:
            raise ValueError(f"unknown pilot family {self.family!r}; choose one of {list(PILOT_FAMILIES)}")
        if len(self.design) != len(self.parameters) or not self.design:
            raise ValueError("a pilot needs one global parameter per design column")

    @classmethod
    def from_dict(cls, d: dict | None) -> PilotSettings | None:
        if d is None:
            return None
        return cls(d["family"], tuple(d["design"]), int(d["response"]), tuple(d["parameters"]), d.get("trials"))


def _mean_and_weight(family: str, eta: torch.Tensor, n: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The mean and the IRLS weight ``d mu / d eta`` of a canonical-link family."""
    if family == "gaussian":
        return eta, torch.ones_like(eta)
    if family == "poisson":
        mu = torch.exp(eta)
        return mu, mu
    p = torch.sigmoid(eta)
    return n * p, n * p * (1 - p)


def glm_pilot(x: torch.Tensor, mask: torch.Tensor, settings: PilotSettings, prior_mean: torch.Tensor,
              prior_sd: torch.Tensor, iterations: int = PILOT_ITERATIONS,
              moments: bool = False, shift: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Penalized pooled-GLM coefficients and their standard errors for each data set, ``(B, P)`` each.

    ``x (B, J, N, F)`` are data sets of groups of rows and ``mask (B, J, N)`` marks the
    observed rows (padded groups have no rows).  ``moments=True``: each group is one row of
    moment sums (:mod:`amortbayes.moments`) of row columns less ``shift``, and ``settings``'
    columns index the columns ``[1, row columns]`` (0: an intercept's ones); the gaussian
    pilot needs nothing else and gives the same values as from the rows.  The penalty is ``N(prior_mean, prior_sd^2)``
    per coefficient.  The standard error is the larger of the model-based one,
    ``sqrt(diag(H^-1))`` for ``H = X'WX / phi + diag(1 / prior_sd^2)``, and the
    cluster-robust one, ``sqrt(diag(H^-1 (sum_j s_j s_j') H^-1))`` with ``s_j`` the score of
    group ``j``.  Computed in float64.

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> t = torch.arange(40.0).reshape(1, 1, 40, 1) / 10
        >>> y = 1.0 + 2.0 * t + 0.1 * torch.randn(1, 1, 40, 1, generator=g)
        >>> x = torch.cat([torch.ones_like(t), t, y], -1)
        >>> s = PilotSettings("gaussian", design=(0, 1), response=2, parameters=(0, 1))
        >>> est, se = glm_pilot(x, torch.ones(1, 1, 40), s, torch.zeros(2), torch.full((2,), 100.0))
        >>> [round(v, 1) for v in est[0].tolist()], bool((se < 0.05).all())
        ([1.0, 2.0], True)
    """
    f = settings.family
    xd = x.double()
    m = mask.double()
    if moments:
        if f != "gaussian":
            raise ValueError(f"a {f} pilot needs the rows; groups given as moments have a gaussian pilot only")
        return _gaussian_pilot_from_moments(xd, m, settings, prior_mean, prior_sd, shift)
    # the observed rows of each data set packed first (padding to the largest group costs up to
    # five times the rows in designs of unequal groups), with each row's group for the scores
    b_, j_, n_ = m.shape
    flat = m.reshape(b_, j_ * n_)
    r_max = max(1, int(flat.sum(1).max()))
    order = torch.argsort(flat, dim=1, descending=True, stable=True)[:, :r_max]  # (B, R)
    group = order // n_
    m = flat.gather(1, order)
    xd = xd.reshape(b_, j_ * n_, -1).gather(1, order[..., None].expand(-1, -1, xd.shape[-1]))
    X = xd[..., list(settings.design)] * m[..., None]  # (B, R, P), zero on padded rows
    y = xd[..., settings.response] * m
    n = xd[..., settings.trials] * m if settings.trials is not None else m
    mean0, sd0 = prior_mean.double().to(x.device), prior_sd.double().clamp_min(1e-8).to(x.device)
    prec = 1.0 / sd0**2  # (P,)
    eye = torch.diag_embed(prec).expand(x.shape[0], -1, -1)
    # working response and weights: R's glm() start (mu from y), then IRLS from the current eta
    if f == "poisson":
        mu = y + 0.5 * m
        eta = torch.log(mu.clamp_min(1e-10))
        w = mu
    elif f == "binomial":
        p = (y + 0.5 * m) / (n + m).clamp_min(1e-10)
        eta = torch.logit(p.clamp(1e-6, 1 - 1e-6))
        w = n * p * (1 - p)
        mu = n * p
    else:
        eta, mu, w = torch.zeros_like(y), torch.zeros_like(y), m.clone()
    steps = 1 if f == "gaussian" else iterations
    previous = None
    for _ in range(steps):
        work = torch.where(w > 0, eta + (y - mu) / w.clamp_min(1e-10), eta) if f != "gaussian" else y
        wm = w * m
        H = torch.einsum("brp,br,brq->bpq", X, wm, X) + eye
        rhs = torch.einsum("brp,br->bp", X, wm * work) + prec * mean0
        beta = torch.linalg.solve(H, rhs)
        eta = torch.einsum("brp,bp->br", X, beta)
        if f != "gaussian":  # exp() and sigmoid() of +-30 stay finite
            eta = eta.clamp(-ETA_BOUND, ETA_BOUND)
        mu, w = _mean_and_weight(f, eta, n)
        # converged in every data set of the batch (R's glm() criterion): the rest would change nothing
        if previous is not None and bool(((beta - previous).abs() <= PILOT_TOLERANCE * (beta.abs() + 0.1)).all()):
            break
        previous = beta
    resid = (y - mu) * m
    if f == "gaussian":  # dispersion: residual variance (the penalty's shrinkage ignored in the df)
        rows = m.sum(1)
        phi = ((resid**2).sum(1) / (rows - len(settings.design)).clamp_min(1.0)).clamp_min(1e-12)
    else:
        phi = torch.ones(x.shape[0], dtype=xd.dtype, device=x.device)
    wm = w * m
    H = torch.einsum("brp,br,brq->bpq", X, wm, X) / phi[:, None, None] + eye
    H_inv = torch.linalg.inv(H)
    per_row = X * resid[..., None] / phi[:, None, None]
    scores = torch.zeros(b_, j_, per_row.shape[-1], dtype=per_row.dtype, device=x.device)
    scores.scatter_add_(1, group[..., None].expand_as(per_row), per_row)  # per group
    meat = torch.einsum("bjp,bjq->bpq", scores, scores)
    robust = torch.diagonal(H_inv @ meat @ H_inv, dim1=-2, dim2=-1)
    model_based = torch.diagonal(H_inv, dim1=-2, dim2=-1)
    se = torch.maximum(model_based, robust).sqrt()
    bad = ~(torch.isfinite(beta).all(-1) & torch.isfinite(se).all(-1))
    beta = torch.where(bad[:, None], mean0.expand_as(beta), beta)
    se = torch.where(bad[:, None], sd0.expand_as(se), se)
    return beta, se


def _gaussian_pilot_from_moments(x: torch.Tensor, m: torch.Tensor, settings: PilotSettings, prior_mean: torch.Tensor,
                                 prior_sd: torch.Tensor, shift: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`glm_pilot`'s gaussian estimate and errors from moment rows ``x (B, J, 1, M)``, ``m (B, J, 1)``."""
    from amortbayes.moments import augmented_gram

    G = augmented_gram(x[..., 0, :] * m, shift)  # (B, J, 1 + F, 1 + F) of [1, row columns]
    n = G[..., 0, 0]
    d, r = list(settings.design), settings.response
    XX, Xy, yy = G[..., d, :][..., :, d], G[..., d, r], G[..., r, r]
    mean0, sd0 = prior_mean.double().to(x.device), prior_sd.double().clamp_min(1e-8).to(x.device)
    prec = 1.0 / sd0**2
    eye = torch.diag_embed(prec).expand(x.shape[0], -1, -1)
    beta = torch.linalg.solve(XX.sum(1) + eye, Xy.sum(1) + prec * mean0)
    ss = yy.sum(1) - 2 * (beta * Xy.sum(1)).sum(-1) + (beta * (XX.sum(1) @ beta[..., None])[..., 0]).sum(-1)
    phi = (ss / (n.sum(1) - len(d)).clamp_min(1.0)).clamp_min(1e-12)
    H_inv = torch.linalg.inv(XX.sum(1) / phi[:, None, None] + eye)
    scores = (Xy - (XX @ beta[:, None, :, None])[..., 0]) / phi[:, None, None]  # per group
    meat = torch.einsum("bjp,bjq->bpq", scores, scores)
    robust = torch.diagonal(H_inv @ meat @ H_inv, dim1=-2, dim2=-1)
    se = torch.maximum(torch.diagonal(H_inv, dim1=-2, dim2=-1), robust).sqrt()
    bad = ~(torch.isfinite(beta).all(-1) & torch.isfinite(se).all(-1))
    return torch.where(bad[:, None], mean0.expand_as(beta), beta), torch.where(bad[:, None], sd0.expand_as(se), se)


def pilot_context(x: torch.Tensor, mask: torch.Tensor, settings: PilotSettings, mean: torch.Tensor,
                  std: torch.Tensor, moments: bool = False, shift: torch.Tensor | None = None) -> torch.Tensor:
    """``[m, log s]`` ``(B, 2G)`` in the flow's standardized space (``z = (theta - mean) / std``) for all ``G`` global parameters.

    Coordinates without a pilot get ``m = 0, log s = 0`` (the identity).  The pilot's
    location stays within ``+-MAX_Z`` and its scale at most 1 (never wider than the prior).
    """
    g = mean.shape[-1]
    cols = list(settings.parameters)
    est, se = glm_pilot(x, mask, settings, mean[cols], std[cols], moments=moments, shift=shift)
    loc = torch.zeros(x.shape[0], g, dtype=torch.float64, device=x.device)
    log_scale = torch.zeros_like(loc)
    mu, sd = mean[cols].double(), std[cols].double()
    loc[:, cols] = ((est - mu) / sd).clamp(-MAX_Z, MAX_Z)
    log_scale[:, cols] = torch.log((se / sd).clamp(1e-4, 1.0))
    return torch.cat([loc, log_scale], -1).to(x.dtype)


class ContextShift(Transform):
    """``u = (z - m) / s`` with ``m`` and ``log s`` read from the context's last ``2 dim`` columns.

    The first transform of a pilot-centred flow (:func:`~amortbayes.networks.flows.build_flow`
    with ``context_shift=True``).  A context of ``B`` rows for ``B r`` inputs stands for each
    row repeated ``r`` times (the couplings' convention for ``r`` draws per data set).

    Example:
        >>> t = ContextShift(2)
        >>> c = torch.tensor([[5.0, 1.0, -3.0, math.log(2.0), 0.0]])  # a feature, m = (1, -3), log s
        >>> u, logdet = t(torch.tensor([[3.0, -3.0]]), c)
        >>> u.tolist(), round(float(logdet), 4) == round(-math.log(2.0), 4)
        ([[1.0, 0.0]], True)
    """

    def __init__(self, dim: int):
        super().__init__()
        self.dim = dim

    def _params(self, inputs: torch.Tensor, context: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        c = context[..., -2 * self.dim :]
        if c.shape[0] != inputs.shape[0]:
            c = c.repeat_interleave(inputs.shape[0] // c.shape[0], dim=0)
        return c[..., : self.dim], c[..., self.dim :]

    def forward(self, inputs: torch.Tensor, context: torch.Tensor | None = None):
        loc, log_scale = self._params(inputs, context)
        return (inputs - loc) * torch.exp(-log_scale), -log_scale.sum(-1)

    def inverse(self, inputs: torch.Tensor, context: torch.Tensor | None = None):
        loc, log_scale = self._params(inputs, context)
        return loc + inputs * torch.exp(log_scale), log_scale.sum(-1)
