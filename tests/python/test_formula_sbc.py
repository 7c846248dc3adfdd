"""SBC of formula-built amortizers: 99 % simultaneous bands on the globals and one group's effects per data set.

The default run trains a varying-intercept gaussian model on a small design for a minute and
checks that SBC passes, and that the same check fails for an untrained network (so it can
fail); the slow tests train one model per family on a design like a real data set's.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("formulae")

from amortbayes.formula.fit import amortize  # noqa: E402


def _design(n_groups: int, sizes: tuple[int, int], seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    n = rng.integers(sizes[0], sizes[1] + 1, n_groups)
    g = np.repeat([f"g{j:02d}" for j in range(n_groups)], n)
    x = rng.normal(size=len(g))
    return pd.DataFrame({"g": g, "x": x, "y": 1.0 + 0.5 * x + rng.normal(size=len(g)),
                         "k": rng.poisson(np.exp(0.5 + 0.3 * x)), "b": rng.binomial(1, 0.4, len(g)),
                         "n": rng.integers(5, 15, len(g)), "pos": np.exp(rng.normal(size=len(g)))})


def test_sbc_passes_for_a_trained_varying_intercept_model_and_fails_untrained():
    df = _design(8, (3, 8))
    trained = amortize("y ~ x + (1 | g)", df, budget=1500, method="amortized", draws=50, progress=False)
    result = trained.sbc(n_sims=100, n_draws=50)
    assert result.passed, result.table
    untrained = amortize("y ~ x + (1 | g)", df, budget=2, method="amortized", draws=50, progress=False)
    assert not untrained.sbc(n_sims=100, n_draws=50).passed


FAMILIES = {
    "gaussian": ("y ~ x + (1 + x | g)", {}),
    "student": ("y ~ x + (1 | g)", {}),
    "lognormal": ("pos ~ x + (1 | g)", {}),
    "bernoulli": ("b ~ x + (1 | g)", {}),
    "binomial": ("k | trials(n) ~ x + (1 | g)", {}),
    "poisson": ("k ~ x + (1 | g)", {}),
    "negbinomial": ("k ~ x + (1 | g)", {}),
}


@pytest.mark.slow
@pytest.mark.parametrize("family", list(FAMILIES))
def test_sbc_passes_for_every_family(family):
    formula, _ = FAMILIES[family]
    df = _design(12, (4, 12), seed=1)
    if family == "binomial":
        df["k"] = np.minimum(df["k"], df["n"])
    fitted = amortize(formula, df, family, budget=4000, method="amortized", draws=50, progress=False)
    result = fitted.sbc(n_sims=200, n_draws=100)
    assert result.passed, result.table
