"""Standardization of parameters and data, learned from simulations and saved with the model.

``z = (v - mean) / std`` per feature (last axis).  Statistics are computed over the
*observed* entries only (the mask), so padding never shifts them: a padded and an unpadded
batch give the same mean and std.  For parameters the log-Jacobian of the map is
``-sum(log std)``, which :class:`amortbayes.amortizers.PosteriorAmortizer` adds to
densities so that ``log_prob`` is on the original scale.
"""

from __future__ import annotations

import math
import warnings

import torch
from torch import nn


class Standardizer(nn.Module):
    """Per-feature affine standardization with statistics stored as buffers.

    Example:
        >>> s = Standardizer(2)
        >>> s.fit(torch.tensor([[0.0, 10.0], [2.0, 30.0]]))
        >>> s(torch.tensor([[1.0, 20.0]])).tolist()
        [[0.0, 0.0]]
    """

    def __init__(self, features: int, min_std: float = 1e-6):
        super().__init__()
        self.min_std = min_std
        self.register_buffer("mean", torch.zeros(features))
        self.register_buffer("std", torch.ones(features))
        self.register_buffer("fitted", torch.tensor(False))

    @torch.no_grad()
    def fit(self, values: torch.Tensor, mask: torch.Tensor | None = None) -> None:
        """Learn mean and std over all axes but the last; ``mask`` has ``values.shape[:-1]``."""
        v = values.reshape(-1, values.shape[-1]).double()
        if mask is None:
            w = torch.ones(v.shape[0], dtype=v.dtype, device=v.device)
        else:
            w = mask.reshape(-1).to(v)
        n = w.sum().clamp_min(1.0)
        mean = (v * w[:, None]).sum(0) / n
        var = (((v - mean) ** 2) * w[:, None]).sum(0) / n
        self.mean.copy_(mean.float())
        self.std.copy_(var.sqrt().clamp_min(self.min_std).float())
        self.fitted.fill_(True)

    @torch.no_grad()
    def fit_moments(self, moments: torch.Tensor, group_mask: torch.Tensor | None = None) -> None:
        """Learn mean and std of row columns from groups given as moment rows (:mod:`amortbayes.moments`).

        ``moments (..., J, 1, M)`` and ``group_mask (..., J)``; equal to :meth:`fit` on the rows.
        """
        from amortbayes.moments import split_moments

        m = moments.reshape(-1, moments.shape[-1]).double()
        if group_mask is not None:
            m = m * group_mask.reshape(-1, 1).to(m)
        n, s1, s2 = split_moments(m.sum(0))
        f = s1.shape[-1]
        diag = torch.tensor([k * f - k * (k - 1) // 2 for k in range(f)], device=m.device)  # (k, k) in k <= l order
        mean = s1 / n.clamp_min(1.0)
        var = (s2[diag] / n.clamp_min(1.0) - mean**2).clamp_min(0.0)
        self.mean.copy_(mean.float())
        self.std.copy_(var.sqrt().clamp_min(self.min_std).float())
        self.fitted.fill_(True)

    def forward(self, values: torch.Tensor) -> torch.Tensor:
        return (values - self.mean) / self.std

    def inverse(self, z: torch.Tensor) -> torch.Tensor:
        return z * self.std + self.mean

    def log_abs_det(self) -> torch.Tensor:
        """``log |dz/dv|`` summed over features."""
        return -torch.log(self.std).sum()


SUPPORTS = ("real", "positive", "unit", "correlation")
# a parameter with fixed bounds, such as a box (uniform) prior's: "interval:-3:3"
INTERVAL = "interval"
# a real parameter below a statistic of its group's data: "below_min:rt" (below the group's
# smallest rt) or "below_log_min:rt" (below its log: a log non-decision time)
DATA_BOUNDS = ("below_min", "below_log_min")
BOUND_GAP = 1e-6  # a bounded value is kept at least this far below its bound (float32 rounding)

SOFT_BOUND = 20.0
SOFT_BOUND_LINEAR = 4.0


def soft_bound(z: torch.Tensor, bound: float = SOFT_BOUND, linear: float = SOFT_BOUND_LINEAR) -> torch.Tensor:
    """The identity on ``|z| <= linear``, beyond it ``linear + (bound - linear) tanh((|z| - linear) / (bound - linear))``.

    Monotone and smooth (slope 1 at the joint), bounded by ``+-bound``.  Summary networks
    take pairwise products of standardized data and of their moments; one heavy-tailed
    observation (a 40 s response time is 128 SDs out) then reaches 1e8 and overflows
    training.  Bounding keeps every input finite and informative; leaving the bulk of the
    data untouched keeps the exact statistics exact there (a plain ``bound * tanh(z / bound)``
    shifts a value 1.5 SDs out by 0.2 %, a third of the precision sleepstudy's
    ``b_Intercept`` needs).

    Example:
        >>> soft_bound(torch.tensor([1.0, -4.0, 100.0])).tolist()[:2], round(soft_bound(torch.tensor(100.0)).item(), 2)
        ([1.0, -4.0], 20.0)
    """
    a = abs(z)
    width = bound - linear
    tail = torch.sign(z) * (linear + width * torch.tanh((a - linear).clamp_min(0.0) / width))
    return torch.where(a <= linear, z, tail)


def interval_bounds(kind: str) -> tuple[float, float] | None:
    """``(lo, hi)`` of an ``"interval:<lo>:<hi>"`` support (None for other supports); a clear error if malformed.

    Example:
        >>> interval_bounds("interval:-3:3"), interval_bounds("positive")
        ((-3.0, 3.0), None)
    """
    head, _, rest = kind.partition(":")
    if head != INTERVAL:
        return None
    parts = rest.split(":")
    try:
        lo, hi = (float(v) for v in parts) if len(parts) == 2 else (None, None)
    except ValueError:
        lo = hi = None
    if lo is None or not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
        raise ValueError(f"parameter support {kind!r} must read 'interval:<lo>:<hi>' with finite lo < hi, "
                         "such as 'interval:-3:3'")
    return lo, hi


def _check_supports(support: tuple[str, ...], n: int, data_names: tuple[str, ...] = ()) -> tuple[str, ...]:
    support = tuple(support) if support else ("real",) * n
    if len(support) != n:
        raise ValueError(f"got {len(support)} parameter supports for {n} parameters")
    for kind in support:
        bound, _, column = kind.partition(":")
        if bound in DATA_BOUNDS:
            if column not in data_names:
                raise ValueError(f"parameter support {kind!r} names data column {column!r}, not one of {list(data_names)}")
        elif bound == INTERVAL:
            interval_bounds(kind)
        elif kind not in SUPPORTS:
            raise ValueError(
                f"unknown parameter support {kind!r}; use {list(SUPPORTS)}, 'interval:<lo>:<hi>' or "
                f"{[b + ':<data column>' for b in DATA_BOUNDS]}"
            )
    return support


class ParameterMap(nn.Module):
    """Constrained parameters to standardized unconstrained values and back.

    Each parameter has a support: ``"real"`` (identity), ``"positive"`` (log),
    ``"unit"`` (logit, for (0, 1)), ``"correlation"`` (atanh, for (-1, 1)) or
    ``"interval:<lo>:<hi>"`` (logit of ``(theta - lo) / (hi - lo)``, for a box prior's
    bounds: without it a flow puts mass outside the box, measured on the SLCP and Gaussian
    mixture tasks of ``benchmarks/sbi_tasks.py`` whose posteriors touch it).  Flows work
    on ``z = standardize(u(theta))``; :meth:`log_abs_det` returns ``log |dz/dtheta|`` so
    densities can be reported for ``theta`` itself, and draws never leave the support.

    A group-level parameter can also be bounded above by its group's data:
    ``"below_min:<column>"`` (below the smallest value of the column in the group) or
    ``"below_log_min:<column>"`` (below its log), such as a diffusion model's log
    non-decision time below the log of the fastest response.  With ``s = theta - b < 0``
    for the bound ``b`` (:meth:`upper`) the map is ``u = logit(e^s)``, the identity shifted
    by ``b`` far below the bound and ``+inf`` at it; every method then takes ``upper``.
    Draws cannot cross the bound, where the likelihood is zero.

    Example:
        >>> pm = ParameterMap(("real", "positive"))
        >>> pm.fit(torch.tensor([[0.0, 1.0], [2.0, 100.0]]))
        >>> pm.inverse(pm(torch.tensor([[1.0, 10.0]]))).tolist()
        [[1.0, 10.0]]
        >>> pm = ParameterMap(("real", "below_min:rt"), data_names=("rt",))
        >>> upper = pm.upper(torch.tensor([[[0.5], [0.3], [9.0]]]), torch.tensor([[1.0, 1.0, 0.0]]))
        >>> upper.tolist()  # per set of rows; padded rows are ignored
        [[inf, 0.30000001192092896]]
        >>> bool((pm.inverse(torch.full((1, 2), 50.0), upper) < upper).all())
        True
    """

    def __init__(self, support: tuple[str, ...] | int, data_names: tuple[str, ...] = ()):
        super().__init__()
        n = support if isinstance(support, int) else len(support)
        self.support = _check_supports(() if isinstance(support, int) else support, n, tuple(data_names))
        bounds = [kind.partition(":") for kind in self.support]
        # codes: 0-3 the SUPPORTS, 4 an interval, 5 a data bound
        codes = [SUPPORTS.index(s) if s in SUPPORTS else 4 if b == INTERVAL else 5 for s, (b, _, _) in
                 zip(self.support, bounds)]
        self.register_buffer("codes", torch.tensor(codes), persistent=False)
        intervals = [interval_bounds(s) for s in self.support if s.partition(":")[0] == INTERVAL]
        self.register_buffer("_lo", torch.tensor([lo for lo, _ in intervals]), persistent=False)
        self.register_buffer("_width", torch.tensor([hi - lo for lo, hi in intervals]), persistent=False)
        # the columns of each transformed support (code 1..4), so that exp, logit, atanh, ...
        # run on those columns only: elementwise transcendentals dominate on 100,000-row draws
        for code in (1, 2, 3, 4):
            cols = [i for i, c in enumerate(codes) if c == code]
            self.register_buffer(f"_cols{code}", torch.tensor(cols, dtype=torch.long) if cols else None,
                                 persistent=False)
        # per parameter: the data column of its bound (-1: none) and whether the bound is a log
        columns = [list(data_names).index(c) if b in DATA_BOUNDS else -1 for b, _, c in bounds]
        self.bound_columns = tuple(columns)
        self.data_names = tuple(data_names)
        self.bound_log = tuple(b == "below_log_min" for b, _, _ in bounds)
        self.has_bounds = any(c >= 0 for c in columns)
        self.std = Standardizer(n)

    def upper(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor | None:
        """Each parameter's data bound for sets of rows ``x (..., N, F)``, ``mask (..., N)``: ``(..., P)``.

        ``+inf`` for unbounded parameters and for sets without rows; None without data bounds.
        """
        if not self.has_bounds:
            return None
        observed = mask.unsqueeze(-1) > 0
        lowest = torch.where(observed, x, torch.full_like(x, float("inf"))).amin(-2)  # (..., F)
        cols = []
        for column, log in zip(self.bound_columns, self.bound_log):
            if column < 0:
                cols.append(torch.full_like(lowest[..., 0], float("inf")))
            else:
                b = lowest[..., column]
                if log and bool((b <= 0).any()):
                    raise ValueError(f"a group's smallest {self.data_names[column]!r} is {float(b.min()):g}; "
                                     "a 'below_log_min' bound needs positive values (response times in seconds?)")
                cols.append(torch.where(torch.isinf(b), b, torch.log(b)) if log else b)
        return torch.stack(cols, dim=-1)

    def _per_support(self, x: torch.Tensor, fns: tuple, rest: torch.Tensor | None = None) -> torch.Tensor:
        """``fns[k - 1]`` applied to the columns of support code ``k`` (positive, unit, correlation, interval) of ``x``.

        The other columns are ``rest`` (default ``x``).  Each function sees its own columns
        only (no work on the others, no ``torch.where`` over every column).
        """
        out = x if rest is None else rest
        if len(fns) != 4:
            raise AssertionError("one function per transformed support: positive, unit, correlation, interval")
        for code, fn in zip((1, 2, 3, 4), fns):
            cols = getattr(self, f"_cols{code}")
            if cols is None:
                continue
            if len(cols) == x.shape[-1]:
                out = fn(x)
            else:
                out = out.index_copy(-1, cols, fn(x.index_select(-1, cols)))
        return out

    def _bounded(self, upper: torch.Tensor | None, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Where a value is bounded (finite bound of a bounded parameter), and the bound (0 elsewhere).

        Only called when the map has data bounds (``has_bounds``).
        """
        if upper is None:
            names = [k for k in self.support if k.partition(":")[0] in DATA_BOUNDS]
            raise ValueError(f"parameters with data-dependent supports {names} need the data's bounds (upper=)")
        upper = upper.to(like)
        bounded = torch.isfinite(upper).expand_as(like)
        return bounded, torch.where(bounded, upper, torch.zeros_like(upper)).expand_as(like)

    def unconstrain(self, theta: torch.Tensor, upper: torch.Tensor | None = None) -> torch.Tensor:
        eps = 1e-6
        u = self._per_support(theta, (
            lambda t: torch.log(t.clamp_min(1e-30)),
            lambda t: torch.logit(t.clamp(eps, 1 - eps)),
            lambda t: torch.atanh(t.clamp(-1 + eps, 1 - eps)),
            lambda t: torch.logit(((t - self._lo) / self._width).clamp(eps, 1 - eps)),
        ))
        if self.has_bounds:
            bounded, b = self._bounded(upper, theta)
            gap = (theta - b).clamp_max(-BOUND_GAP)  # s < 0
            u = torch.where(bounded, gap - torch.log(-torch.expm1(gap)), u)  # logit(e^s)
        return u

    def constrain(self, u: torch.Tensor, upper: torch.Tensor | None = None) -> torch.Tensor:
        # kept strictly inside the support (float32 rounds tanh(9) to 1 and exp(-104) to 0), where
        # unconstrain's clamps put its inputs
        eps = 1e-6
        theta = self._per_support(u, (lambda v: torch.exp(v).clamp_min(1e-30),
                                      lambda v: torch.sigmoid(v).clamp(eps, 1 - eps),
                                      lambda v: torch.tanh(v).clamp(-1 + eps, 1 - eps),
                                      lambda v: self._lo + self._width * torch.sigmoid(v).clamp(eps, 1 - eps)))
        if self.has_bounds:
            bounded, b = self._bounded(upper, u)
            theta = torch.where(bounded, b + torch.nn.functional.logsigmoid(u).clamp_max(-BOUND_GAP), theta)
        return theta

    def fit(self, theta: torch.Tensor, mask: torch.Tensor | None = None, upper: torch.Tensor | None = None) -> None:
        self.std.fit(self.unconstrain(theta, upper), mask)

    def forward(self, theta: torch.Tensor, upper: torch.Tensor | None = None) -> torch.Tensor:
        return self.std(self.unconstrain(theta, upper))

    def inverse(self, z: torch.Tensor, upper: torch.Tensor | None = None) -> torch.Tensor:
        return self.constrain(self.std.inverse(z), upper)

    def log_abs_det(self, theta: torch.Tensor, upper: torch.Tensor | None = None) -> torch.Tensor:
        """``log |dz/dtheta|`` summed over parameters, shape ``theta.shape[:-1]``."""
        t = theta
        per = self._per_support(t, (
            lambda v: -torch.log(v.abs().clamp_min(1e-30)),
            lambda v: -torch.log((v * (1 - v)).clamp_min(1e-30)),
            lambda v: -torch.log((1 - v * v).clamp_min(1e-30)),
            lambda v: -torch.log((((v - self._lo) / self._width) * (1 - (v - self._lo) / self._width)).clamp_min(1e-30)
                                 * self._width),
        ), torch.zeros_like(t))
        if self.has_bounds:  # du/ds = 1 / (1 - e^s)
            bounded, b = self._bounded(upper, t)
            per = torch.where(bounded, -torch.log(-torch.expm1((t - b).clamp_max(-BOUND_GAP))), per)
        return per.sum(-1) + self.std.log_abs_det()

    def check_support(self, theta: torch.Tensor, names: tuple[str, ...]) -> None:
        """A clear error for values outside a parameter's support (data bounds are not checked here)."""
        c = self.codes
        bad = ((c == 1) & (theta <= 0)) | ((c == 2) & ((theta <= 0) | (theta >= 1))) | (
            (c == 3) & (theta.abs() >= 1)
        )
        if self._cols4 is not None:
            inside = theta.index_select(-1, self._cols4)
            outside = (inside <= self._lo) | (inside >= self._lo + self._width)
            bad = bad.index_copy(-1, self._cols4, bad.index_select(-1, self._cols4) | outside)
        if bad.any():
            cols = sorted({names[i] for i in torch.nonzero(bad)[:, -1].tolist()})
            raise ValueError(f"parameter value(s) outside the support of {cols}")


class DataRange(nn.Module):
    """The range of simple data statistics over the simulations an amortizer was adapted on.

    The statistics of a data set, in the data's own units, are for each observed column its
    mean and SD over all observed rows and, for grouped data, the SD of the group means
    across groups.  :meth:`fit` stores their minimum and maximum over the adaptation
    simulations (draws from the prior predictive); :meth:`check` warns, naming the
    statistic, when a data set lies beyond that range by more than ``margin`` of its width.
    The amortizer saw little or nothing like such data (e.g. a prior-data conflict), so its
    posterior there may be inaccurate however long it trains.  It is a prior predictive
    check at a level of about ``1 / simulations`` per statistic: a few data sets in a
    thousand simulated from the prior trigger it too (measured on the hierarchical linear
    model: 2-7 of 1,000), and data can be atypical in ways these statistics do not show.

    Example:
        >>> r = DataRange(("y",))
        >>> r.fit(torch.randn(100, 20, 1), torch.ones(100, 20))
        >>> r.names
        ["mean of 'y'", "SD of 'y'"]
        >>> r.outside(torch.full((1, 20, 1), 50.0), torch.ones(1, 20))  # (data set, statistic, value)
        [(0, 0, 50.0), (0, 1, 0.0)]
    """

    def __init__(self, data_names: tuple[str, ...], grouped: bool = False, margin: float = 0.1,
                 moments: bool = False, shift: tuple[float, ...] = ()):
        super().__init__()
        # moments=True: grouped data given as moment rows of the row columns data_names, less
        # shift (amortbayes.moments); the means are reported in the columns' own units
        if moments and not grouped:
            raise ValueError("moment rows are a layout of grouped data: DataRange(..., grouped=True, moments=True)")
        self.moments = moments
        self.register_buffer("shift", torch.tensor(shift if shift else [0.0] * len(data_names), dtype=torch.float64),
                             persistent=False)
        self.names = [f"mean of {n!r}" for n in data_names] + [f"SD of {n!r}" for n in data_names]
        if grouped:
            self.names += [f"between-group SD of the group means of {n!r}" for n in data_names]
        self.grouped, self.margin = grouped, margin
        self.register_buffer("low", torch.full((len(self.names),), -float("inf")))
        self.register_buffer("high", torch.full((len(self.names),), float("inf")))
        self.register_buffer("simulations", torch.tensor(0))

    def statistics(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``(B, S)`` statistics of padded data: ``x (B, N, F)`` (or ``(B, J, N, F)`` if grouped), masks as ``x[..., 0]``.

        Computed from each group's count, sums and sums of squares (in float64), so groups
        given as moment rows (``moments=True``: ``x (B, J, 1, M)``) give the same values as
        their rows.
        """
        if self.moments:
            from amortbayes.moments import split_moments

            n_j, s1, s2 = split_moments(x.double()[..., 0, :] * mask.double())
            f = s1.shape[-1]
            s2 = s2[..., [k * f - k * (k - 1) // 2 for k in range(f)]]  # the squares (k, k)
            n_j = n_j[..., None]
        else:
            xd, m = x.double(), mask.double().unsqueeze(-1)
            if not self.grouped:
                xd, m = xd[:, None], m[:, None]
            n_j, s1, s2 = m.sum(-2), (xd * m).sum(-2), (xd * xd * m).sum(-2)
        n = n_j.sum(1).clamp_min(1.0)  # (B, 1)
        mean = s1.sum(1) / n
        # the SD about the overall mean from the groups' sums: sum_j (S2_j - 2 mean S1_j + n_j mean^2)
        ss = (s2 - 2 * mean[:, None] * s1 + n_j * mean[:, None] ** 2).sum(1)
        parts = [mean + self.shift.to(mean), (ss / n).clamp_min(0.0).sqrt()]
        if self.grouped:
            has = (n_j > 0).double()
            means = s1 / n_j.clamp_min(1.0)
            n_groups = has.sum(1).clamp_min(1.0)
            centre = (means * has).sum(1) / n_groups
            parts.append(((((means - centre[:, None]) * has) ** 2).sum(1) / n_groups).sqrt())
        return torch.cat(parts, dim=-1)

    @torch.no_grad()
    def fit(self, x: torch.Tensor, mask: torch.Tensor) -> None:
        stats = self.statistics(x, mask)
        self.low.copy_(stats.amin(0).float())
        self.high.copy_(stats.amax(0).float())
        self.simulations.fill_(stats.shape[0])

    @torch.no_grad()
    def outside(self, x: torch.Tensor, mask: torch.Tensor) -> list[tuple[int, int, float]]:
        """``(data set, statistic, value)`` of every statistic outside the widened training range."""
        if int(self.simulations) == 0:
            return []
        stats = self.statistics(x, mask).cpu()
        low, high = self.low.double().cpu(), self.high.double().cpu()
        # a relative floor: a statistic that is constant in training (a design column the
        # simulator copies from the data) is stored in float32 and must not flag its own value
        pad = self.margin * (high - low) + 1e-4 * torch.maximum(low.abs(), high.abs())
        bad = (stats < low - pad) | (stats > high + pad)
        return [(b, k, float(stats[b, k])) for b, k in bad.nonzero().tolist()]

    def describe(self, k: int, value: float) -> str:
        """``"mean of 'y' = 5299 (simulations: 112 to 593)"``: statistic ``k`` at ``value`` against its range."""
        return f"{self.names[k]} = {value:.4g} (simulations: {float(self.low[k]):.4g} to {float(self.high[k]):.4g})"

    def check(self, x: torch.Tensor, mask: torch.Tensor) -> None:
        """Warn (``UserWarning``) if any data set lies outside the range seen in training."""
        found = self.outside(x, mask)
        if not found:
            return
        sets = sorted({b for b, _, _ in found})
        first = [self.describe(k, v) for b, k, v in found if b == sets[0]]
        warnings.warn(
            f"data set(s) {sets[:5]}{' ...' if len(sets) > 5 else ''} lie outside the range of the "
            f"{int(self.simulations)} prior-predictive simulations the amortizer was adapted on: {'; '.join(first)}"
            f"{' (data set ' + str(sets[0]) + ')' if len(sets) > 1 else ''}. Such data are rare or impossible "
            "under the model's prior, so the amortizer saw little or nothing like them in training and its "
            "posterior may be inaccurate there (a prior-data conflict, or data in other units or coding): "
            "check the prior predictive, or compare with a Stan fit (amortbayes.reference).",
            stacklevel=3,
        )
