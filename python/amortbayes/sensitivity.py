"""Sensitivity-aware amortization: modelling choices as context variables the simulator receives and the networks condition on.

A statistician's analysis rests on choices the data do not make: the prior's scale, the
likelihood family, which rows count.  Instead of one amortizer per choice, a model declares a
*context space* and every simulated data set draws its own context ``c``; the simulator uses
it and the posterior network learns ``q(theta | x, c)`` (Elsemüller et al. 2023).  Then a
sensitivity analysis over a whole family of choices is a batch of network passes.

Contexts (a dict ``name -> declaration``, JSON-ready, saved in the amortizer's ModelInfo):

``power_scale("prior", 0.5, 2)``
    the prior raised to a power, ``p(theta)^alpha`` (normalized), ``alpha`` log-uniform in the
    range during training; ``power_scale("likelihood", ...)`` raises each observation's
    likelihood, ``p(x_i | theta)^beta``.  Power-scaling as priorsense defines it (Kallioinen
    et al. 2023); the model simulates the powered densities directly where its families are
    closed under powers (normal: variance / alpha; Student-t: ``nu' = alpha (nu + 1) - 1``,
    scale ``* sqrt(nu / nu')``; exponential: rate * alpha; gamma, beta) and says so in its docs.
    A simulator can only draw *normalized* densities: ``p(x_i | theta)^beta / Z(theta, beta)``.
    The posterior it implies equals priorsense's ``p(theta) p(x | theta)^beta`` exactly when
    ``Z`` does not depend on ``theta`` (a location family with known scale, as the conjugate
    Gaussian model); otherwise (an unknown noise SD, a Bernoulli probability) it differs by
    ``Z(theta, beta)^N`` and is another, if reasonable, perturbation of the likelihood.  Prior
    powers are always exact (the prior's normalizer never depends on ``theta``).
``choice("normal", "student_t")``
    a discrete alternative, one-hot to the networks; ``of="prior"`` or ``of="likelihood"`` says
    which part of the model it chooses (the likelihood family by default for the models here:
    ``ConjugateGaussian`` takes a likelihood family and a prior family).

The networks see ``log alpha`` for a power and the one-hot columns of a choice.

References:
    Elsemüller, Olischläger, Schmitt, Bürkner, Köthe & Radev (2023). Sensitivity-aware
    amortized Bayesian inference. arXiv:2310.11122.
    Kallioinen, Paananen, Bürkner & Vehtari (2023). Detecting and diagnosing prior and
    likelihood sensitivity with power-scaling. Statistics and Computing 34, 57.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch

__all__ = ["ContextSpace", "choice", "data_sensitivity", "power_scale", "powerscale_sensitivity", "sensitivity_sweep"]

COMPONENTS = ("prior", "likelihood")


def power_scale(component: str, low: float = 0.5, high: float = 2.0) -> dict[str, Any]:
    """Declare a power-scaling context of ``"prior"`` or ``"likelihood"`` over ``[low, high]`` (must hold 1).

    Example:
        >>> power_scale("prior")
        {'power': 'prior', 'range': [0.5, 2.0]}
    """
    return {"power": component, "range": [float(low), float(high)]}


def choice(*options: str, of: str | None = None) -> dict[str, Any]:
    """Declare a discrete context among ``options`` (the first is the default).

    ``of``: the part of the model it chooses, ``"prior"`` or ``"likelihood"`` (None: the
    model's default, the likelihood family for the built-in models).

    Example:
        >>> choice("normal", "student_t")
        {'choices': ['normal', 'student_t']}
        >>> choice("normal", "student_t", of="prior")
        {'choices': ['normal', 'student_t'], 'of': 'prior'}
    """
    out: dict[str, Any] = {"choices": [str(o) for o in options]}
    if of is not None:
        out["of"] = str(of)
    return out


class ContextSpace:
    """The declared contexts of a model: sampling for training, encoding for the networks, checking users' values.

    Example:
        >>> space = ContextSpace({"alpha": power_scale("prior"), "likelihood": choice("normal", "student_t")})
        >>> space.width, space.names
        (3, ('alpha', 'likelihood'))
        >>> c = space.sample(4, torch.Generator().manual_seed(0))
        >>> space.encode(c).shape
        torch.Size([4, 3])
        >>> space.resolve({"likelihood": "student_t"})
        {'alpha': tensor([1.]), 'likelihood': tensor([1.])}
    """

    def __init__(self, spec: Mapping[str, Any] | None = None):
        self.spec: dict[str, dict[str, Any]] = {}
        for name, d in dict(spec or {}).items():
            d = dict(d)
            if "power" in d:
                lo, hi = (float(v) for v in d.get("range", (0.5, 2.0)))
                if d["power"] not in COMPONENTS:
                    raise ValueError(f"context {name!r}: power-scaling applies to {COMPONENTS}, got {d['power']!r}")
                if not (0 < lo <= 1 <= hi and lo < hi and math.isfinite(hi)):
                    raise ValueError(f"context {name!r}: the range of a power must hold 1 and lie in (0, inf), "
                                     f"got [{lo}, {hi}]")
                d = {"power": d["power"], "range": [lo, hi]}
            elif "choices" in d:
                options = [str(o) for o in d["choices"]]
                if len(options) < 2 or len(set(options)) != len(options):
                    raise ValueError(f"context {name!r}: a choice needs two or more distinct options, got {options}")
                of = d.get("of")
                if of is not None and of not in COMPONENTS:
                    raise ValueError(f"context {name!r}: a choice is of the {' or the '.join(COMPONENTS)}, got of={of!r}")
                d = {"choices": options, **({"of": of} if of is not None else {})}
            else:
                raise ValueError(f"context {name!r}: declare it with power_scale(...) or choice(...), got {d}")
            self.spec[str(name)] = d

    def __bool__(self) -> bool:
        return bool(self.spec)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self.spec)

    @property
    def width(self) -> int:
        """Columns of the encoded context: one per power, one per option of a choice."""
        return sum(1 if "power" in d else len(d["choices"]) for d in self.spec.values())

    def power(self, component: str) -> str | None:
        """The name of the context that power-scales ``component``, if any."""
        return next((n for n, d in self.spec.items() if d.get("power") == component), None)

    def choice_of(self, component: str) -> str | None:
        """The name of the choice of ``component`` (an untagged choice counts as the likelihood's), if any."""
        return next((n for n, d in self.spec.items() if "choices" in d
                     and d.get("of", "likelihood") == component), None)

    def sample(self, n: int, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """``n`` draws of every context: powers log-uniform in their range, choices uniform (as option indices)."""
        out = {}
        for name, d in self.spec.items():
            if "power" in d:
                lo, hi = (math.log(v) for v in d["range"])
                out[name] = torch.exp(lo + (hi - lo) * torch.rand(n, generator=generator))
            else:
                out[name] = torch.randint(len(d["choices"]), (n,), generator=generator).float()
        return out

    def encode(self, values: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """``(n, width)`` network input: ``log`` of each power, one-hot of each choice."""
        cols = []
        for name, d in self.spec.items():
            v = torch.as_tensor(values[name], dtype=torch.float32).reshape(-1)
            if "power" in d:
                cols.append(torch.log(v)[:, None])
            else:
                cols.append(torch.nn.functional.one_hot(v.long(), len(d["choices"])).float())
        return torch.cat(cols, dim=-1)

    def resolve(self, values: Mapping[str, Any] | None, n: int = 1) -> dict[str, torch.Tensor]:
        """A user's context (names to values; option names for choices), defaults filled in, checked.

        Defaults: 1 for a power (the model as written), the first option of a choice.
        ``n`` repeats a single value; a value may also be a sequence of ``n``.

        Raises:
            ValueError: an unknown name (naming the known ones), a power outside its trained
                range (naming it), an unknown option (naming the options).
        """
        values = dict(values or {})
        unknown = [k for k in values if k not in self.spec]
        if unknown:
            known = ", ".join(self.spec) if self.spec else "none (the amortizer was trained without contexts)"
            raise ValueError(f"unknown context {unknown[0]!r}; known contexts: {known}")
        out = {}
        for name, d in self.spec.items():
            raw = values.get(name, 1.0 if "power" in d else d["choices"][0])
            items = [raw] * n if isinstance(raw, str) or not hasattr(raw, "__len__") else list(raw)
            if "power" in d:
                v = torch.tensor([float(a) for a in items])
                lo, hi = d["range"]
                bad = (v < lo * (1 - 1e-9)) | (v > hi * (1 + 1e-9)) | ~torch.isfinite(v)
                if bool(bad.any()):
                    raise ValueError(f"context {name} = {float(v[bad][0]):g} is outside the trained range "
                                     f"[{lo:g}, {hi:g}]")
            else:
                options = d["choices"]
                wrong = [a for a in items if str(a) not in options]
                if wrong:
                    raise ValueError(f"context {name} = {wrong[0]!r} is not one of the trained options {options}")
                v = torch.tensor([float(options.index(str(a))) for a in items])
            out[name] = v
        return out

    def label(self, values: Mapping[str, torch.Tensor], i: int) -> dict[str, Any]:
        """Row ``i`` of resolved values as plain Python (option names for choices)."""
        return {name: (float(values[name][i]) if "power" in d else d["choices"][int(values[name][i])])
                for name, d in self.spec.items()}


def encode_context(space: ContextSpace, context: Mapping[str, Any] | None, n: int = 1) -> torch.Tensor | None:
    """A user's context dict checked and encoded ``(n, C)`` for an amortizer trained on ``space`` (None without contexts).

    Raises:
        ValueError: context values for an amortizer trained without contexts, an unknown
            context name, or a value outside the trained range.
    """
    if not space:
        if context:
            raise ValueError(f"unknown context {next(iter(context))!r}; this amortizer was trained without "
                             "contexts (declare them on the model: amortbayes.sensitivity)")
        return None
    return space.encode(space.resolve(context, n))


# -- analyses with a context-conditioned amortizer -------------------------------------------
def _posterior_amortizer(amortizer: Any) -> Any:
    """The network holding the contexts (a PosteriorAmortizer; a fit's amortizer)."""
    net = getattr(amortizer, "amortizer", amortizer)
    if not hasattr(net, "sample_contexts"):
        raise TypeError(f"{type(amortizer).__name__} does not take contexts; train a PosteriorAmortizer of a model "
                        "with contexts")
    return net


def sensitivity_sweep(amortizer: Any, data: Any, grid: Mapping[str, Any] | Sequence[Mapping[str, Any]], *,
                      n: int = 2000, seed: int | None = 0, probs: Sequence[float] = (0.05, 0.5, 0.95)):
    """Posterior summaries of one data set over a grid of contexts, as a tidy DataFrame.

    Args:
        amortizer: a context-conditioned :class:`~amortbayes.amortizers.PosteriorAmortizer`.
        data: one data set.
        grid: ``{name: values}`` (every combination) or a list of context dicts.
        n: draws per context (the same base draws for all: smooth curves).

    Returns:
        one row per context and parameter: the context's columns, ``variable``, ``mean``,
        ``sd`` and a column per quantile (``q5``, ``q50``, ``q95``); plot it with
        :func:`amortbayes.plots.plot_sensitivity_sweep`.

    Example:
        >>> # sensitivity_sweep(amortizer, y, {"alpha": np.geomspace(0.5, 2, 50)})
    """
    import itertools

    import numpy as np
    import pandas as pd

    net = _posterior_amortizer(amortizer)
    if isinstance(grid, Mapping):
        keys = list(grid)
        contexts = [dict(zip(keys, combo)) for combo in itertools.product(*(list(grid[k]) for k in keys))]
    else:
        contexts = [dict(c) for c in grid]
    draws = net.sample_contexts(data, contexts, n, seed=seed)  # (G, n, D)
    names = list(net.info.parameter_names)
    rows = []
    for g, ctx in enumerate(contexts):
        label = net.contexts.label(net.contexts.resolve(ctx), 0)
        q = np.quantile(draws[g], probs, axis=0)
        for d, name in enumerate(names):
            rows.append({**label, "variable": name, "mean": float(draws[g, :, d].mean()),
                         "sd": float(draws[g, :, d].std(ddof=1)),
                         **{f"q{100 * p:g}": float(q[i, d]) for i, p in enumerate(probs)}})
    return pd.DataFrame(rows)


def powerscale_sensitivity(amortizer: Any, data: Any, *, n: int = 4000, delta: float = 0.01, seed: int | None = 0,
                           context: Mapping[str, Any] | None = None, log_normalizer: Any = None,
                           draws: Any = None):
    """Priorsense's power-scaling sensitivity of one data set's posterior, from the context-conditioned network.

    The base draws come from ``q(theta | x, c)`` at ``c`` (default: every power 1); the
    posteriors with the prior (likelihood) power-scaled by ``1 / (1 + delta)`` and ``1 + delta``
    are the same draws weighted by the network's density ratio
    ``q(theta | x, alpha) / q(theta | x, 1)``, and the distances and derivative are priorsense's
    (:mod:`amortbayes.diagnostics.powerscale`).  A component the amortizer has no power context
    for gets NaN.  For a multilevel amortizer the draws and densities are the global parameters'.

    ``draws (S, D)``: base draws to use instead of the network's (a formula fit's
    importance-corrected ones: the network's ratio between powers is then applied to exact
    draws, which is more accurate where the raw network is not).

    ``log_normalizer(draws, beta) -> (S,)``: the data set's ``N log Z(theta, beta)`` when the
    simulator powers the likelihood normalized (see the module docstring); the likelihood's
    weights are multiplied by ``Z^N`` so that the result is priorsense's quantity.

    Returns:
        a DataFrame of ``variable``, ``prior``, ``likelihood``, ``diagnosis``.
    """
    import numpy as np

    from amortbayes.diagnostics.powerscale import powerscale_diagnosis, sensitivity_from_weights

    if not (isinstance(delta, (int, float)) and 0 < delta < 0.5):
        raise ValueError(f"delta must be in (0, 0.5), got {delta!r}")
    net = _posterior_amortizer(amortizer)
    base = dict(context or {})
    draws = net.sample_contexts(data, [base], n, seed=seed)[0] if draws is None else np.asarray(draws, dtype=float)
    finite = np.isfinite(draws).all(1)
    if not finite.all():  # a barely trained flow can overflow a positive parameter's exp
        import warnings

        warnings.warn(f"{int((~finite).sum())} of {len(draws)} draws are not finite and are left out",
                      RuntimeWarning, stacklevel=2)
        draws = draws[finite]
    out = {}
    for component in COMPONENTS:
        name = net.contexts.power(component)
        if name is None:
            out[component] = np.full(draws.shape[1], np.nan)
            continue
        a0 = float(base.get(name, 1.0))
        contexts = [base | {name: a0 / (1 + delta)}, base | {name: a0 * (1 + delta)}, base | {name: a0}]
        lp = net.log_prob_contexts(draws, data, contexts)
        lw = [lp[0] - lp[2], lp[1] - lp[2]]
        if component == "likelihood" and log_normalizer is not None:
            lw = [w + np.asarray(log_normalizer(draws, c[name]), dtype=float) for w, c in zip(lw, contexts[:2])]
        out[component] = sensitivity_from_weights(draws, lw[0], lw[1], delta)
    return powerscale_diagnosis(out["prior"], out["likelihood"], net.info.parameter_names)


def data_sensitivity(amortizer: Any, data: Any, perturbations: Any = "loo", *, n: int = 1000, seed: int | None = 0,
                     bootstrap: int = 50, context: Mapping[str, Any] | None = None):
    """How far one data set's posterior moves under perturbations of its rows, all in one batched network pass.

    Args:
        amortizer: a single-level amortizer (``sample_array`` over many data sets).
        data: one data set ``(N, F)``.
        perturbations: ``"loo"`` (each row left out), ``"bootstrap"`` (``bootstrap`` resamples of
            the rows), or a dict ``{label: function(rows) -> rows}`` of custom ones (outlier
            trimming, subsets).
        n: draws per data set.

    Returns:
        one row per perturbation and parameter: ``perturbation``, ``variable``, ``mean``,
        ``sd``, ``shift_sd`` (change of the posterior mean in base posterior SDs) and
        ``sd_ratio`` (posterior SD over the base one).  For a multilevel amortizer (``data``
        prepared, a batch dict, or ``{"data": long frame, "group": column}``) the perturbation
        is ``"logo"``: each group left out, the global parameters reported.
    """
    import numpy as np

    net = getattr(amortizer, "amortizer", amortizer)
    if hasattr(net, "sample_draws"):  # a multilevel amortizer: leave each group out, all in one batched pass
        return _logo_sensitivity(net, data, perturbations, n, seed, context)
    rows = np.asarray(data, dtype=float)
    if rows.ndim != 2 or len(rows) < 2:
        raise ValueError(f"data sensitivity takes one data set of two or more rows (N, F), got shape {rows.shape}")
    if isinstance(perturbations, str):
        if perturbations == "loo":
            sets = {f"-row {i}": np.delete(rows, i, axis=0) for i in range(len(rows))}
        elif perturbations == "bootstrap":
            rng = np.random.default_rng(seed)
            sets = {f"bootstrap {b}": rows[rng.integers(0, len(rows), len(rows))] for b in range(int(bootstrap))}
        else:
            raise ValueError(f"unknown perturbation {perturbations!r}; use 'loo', 'bootstrap' or a dict of functions")
    elif isinstance(perturbations, Mapping):
        sets = {str(k): np.asarray(f(rows.copy()), dtype=float) for k, f in perturbations.items()}
    else:
        raise ValueError("perturbations must be 'loo', 'bootstrap' or a dict {label: function(rows) -> rows}")
    labels = ["none"] + list(sets)
    kw = {"context": dict(context)} if context else {}
    draws = amortizer.sample_array([rows, *sets.values()], n, seed=seed, **kw)  # (1 + P, n, D)
    return _shift_table(labels, amortizer.info.parameter_names, draws)


def _shift_table(labels: Sequence[str], names: Sequence[str], draws: Any):
    """One row per perturbation and parameter from draws ``(1 + P, n, D)``, the first of the unperturbed data."""
    import pandas as pd

    mean, sd = draws.mean(1), draws.std(1, ddof=1)
    return pd.DataFrame([{"perturbation": label, "variable": name, "mean": mean[p, d], "sd": sd[p, d],
                          "shift_sd": (mean[p, d] - mean[0, d]) / sd[0, d], "sd_ratio": sd[p, d] / sd[0, d]}
                         for p, label in enumerate(labels) for d, name in enumerate(names)])


def _logo_sensitivity(net: Any, data: Any, perturbations: Any, n: int, seed: int | None, context: Any):
    """:func:`data_sensitivity` of a multilevel amortizer: the global posterior with each group left out."""
    if perturbations not in ("logo", "loo"):
        raise ValueError(f"a multilevel amortizer's data perturbations are 'logo' (each group left out), got {perturbations!r}")
    if isinstance(data, dict) and "data" in data:
        d = net.prepare(data["data"], group=data.get("group"))
    else:
        d = data if hasattr(data, "group_mask") else net.prepare(data)
    if d.x.shape[0] != 1:
        raise ValueError(f"one data set at a time, got {d.x.shape[0]}")
    j = int(d.group_mask[0].sum())
    if j < 2:
        raise ValueError("leaving groups out needs at least two groups")
    keep = torch.ones(j + 1, d.group_mask.shape[1])
    keep[1:, :j] -= torch.eye(j)
    keep = keep * d.group_mask
    batch = {"x": d.x.expand(j + 1, -1, -1, -1).numpy(), "mask": d.mask.expand(j + 1, -1, -1).numpy(),
             "group_mask": keep.numpy()}
    draws = net.sample_draws(batch, n, seed=seed, context=dict(context) if context else None).global_draws
    return _shift_table(["none"] + [f"-{g}" for g in d.group_labels[0][:j]], net.info.parameter_names, draws)
