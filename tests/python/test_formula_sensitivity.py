"""Formula fits with sensitivity contexts: powered priors and likelihoods simulated exactly, amortized power-scaling."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats

pytest.importorskip("formulae")

from amortbayes.data import load_sleepstudy  # noqa: E402
from amortbayes.formula import prior  # noqa: E402
from amortbayes.formula.fit import amortize  # noqa: E402
from amortbayes.formula.model import FormulaModel  # noqa: E402
from amortbayes.formula.terms import parse_terms  # noqa: E402
from amortbayes.sensitivity import choice, power_scale  # noqa: E402

SPACE = {"alpha": power_scale("prior"), "beta": power_scale("likelihood")}


def _model(**kw):
    terms = parse_terms("Reaction ~ Days + (Days | Subject)", load_sleepstudy())
    return FormulaModel(terms, "gaussian", [prior("normal(10, 5)", class_="b", coef="Days"),
                                            prior("student_t(3, 0, 20)", class_="sd")], **kw)


def test_powered_priors_are_the_priors_to_the_power():
    model = _model(contexts=SPACE)
    n = 100_000
    g = torch.Generator().manual_seed(0)
    for alpha in (0.5, 2.0):
        theta = model.sample_global(n, g, context={"alpha": torch.full((n,), alpha)})
        names = list(model.parameter_names)
        b = theta[:, names.index("b_Days")].numpy()
        assert b.std() == pytest.approx(5 / math.sqrt(alpha), rel=0.02)
        sd = theta[:, names.index("sd_Subject__Intercept")].numpy()
        nu = alpha * 4 - 1  # student_t(3, 0, 20)^alpha, half (sd > 0)
        ref = stats.t(nu, 0, 20 * math.sqrt(3 / nu))
        assert stats.kstest(sd[:20000], lambda v: 2 * ref.cdf(v) - 1).pvalue > 0.001
        # the power's density ratio: log p_alpha = alpha log p + const for every draw
        lp = model.global_log_prior(theta[:5])
        assert torch.isfinite(lp).all()


def test_powered_gaussian_likelihood_scales_sigma_and_knows_its_normalizer():
    model = _model(contexts=SPACE)
    theta = model.sample_global(4, torch.Generator().manual_seed(1))
    powered = model.powered_likelihood(theta, torch.tensor([0.5, 1.0, 2.0, 1.0], dtype=torch.float64))
    s = list(model.parameter_names).index("sigma")
    assert torch.allclose(powered[:, s], theta[:, s] / torch.tensor([0.5, 1.0, 2.0, 1.0]).double().sqrt())
    sigma, beta = 3.0, 0.7
    t = theta[:1].clone()
    t[0, s] = sigma
    z = stats.norm(0, sigma)
    numeric = math.log(__import__("scipy").integrate.quad(lambda y: z.pdf(y) ** beta, -80, 80)[0])
    assert float(model.log_power_normalizer(t, beta)[0]) == pytest.approx(numeric, abs=1e-6)


def test_bad_formula_contexts_are_named():
    with pytest.raises(ValueError, match="formula models take power_scale"):
        _model(contexts={"likelihood": choice("gaussian", "student")})
    terms = parse_terms("Reaction ~ Days + (Days | Subject)", load_sleepstudy().assign(
        Reaction=lambda d: (d["Reaction"] > 300).astype(int)))
    with pytest.raises(ValueError, match="bernoulli likelihood to a power"):
        FormulaModel(terms, "bernoulli", contexts={"beta": power_scale("likelihood")})
    with pytest.raises(ValueError, match="no proper density at the power"):
        _model(contexts={"alpha": power_scale("prior", 0.2, 2.0)})


def test_a_fit_with_contexts_samples_sweeps_saves_and_scores_powerscaling(tmp_path):
    fit = amortize("Reaction ~ Days + (Days | Subject)", load_sleepstudy(), budget=40, method="amortized",
                   draws=200, progress=False, sensitivity=SPACE, file=tmp_path / "fit")
    assert fit.amortizer.info.contexts == SPACE
    sweep = fit.sensitivity_sweep({"alpha": [0.5, 1.0, 2.0]}, n=100)
    assert set(sweep["alpha"]) == {0.5, 1.0, 2.0} and "b_Days" in set(sweep["variable"])
    table = fit.powerscale_sensitivity(method="amortized", n=300)
    assert list(table["variable"])[:2] == ["b_Intercept", "b_Days"] and np.isfinite(table["prior"]).all()
    again = type(fit).load(tmp_path / "fit", draws=200)
    assert again.amortizer.info.contexts == SPACE
    with pytest.raises(ValueError, match="outside the trained range"):
        fit.sensitivity_sweep({"alpha": [4.0]})
