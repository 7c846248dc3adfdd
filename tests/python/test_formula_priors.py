"""brms-style priors: the data-scaled defaults brms prints for sleepstudy, and refusals of flat or malformed priors."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("formulae")

from amortbayes.data import load_sleepstudy  # noqa: E402
from amortbayes.formula import parse_terms  # noqa: E402
from amortbayes.formula.priors import default_priors, prior, prior_table, r_mad  # noqa: E402


def test_sleepstudy_defaults_are_the_ones_brms_prints():
    df = load_sleepstudy()
    table = prior_table(default_priors(parse_terms("Reaction ~ Days + (Days | Subject)", df)))
    rows = {(r["class"], r["coef"]): r["prior"] for _, r in table.iterrows()}
    # brms 2.18 default_prior(Reaction ~ Days + (Days | Subject), sleepstudy)
    assert rows[("Intercept", "")] == "student_t(3, 288.7, 59.3)"
    assert rows[("sd", "")] == rows[("sigma", "")] == "student_t(3, 0, 59.3)"
    assert rows[("cor", "")] == "lkj(1)"
    # b, flat in brms: rstanarm's autoscale 2.5 sd(y) / sd(x)
    expected = 2.5 * df.Reaction.std() / df.Days.std()
    assert rows[("b", "Days")] == f"normal(0, {expected:.3g})"
    assert set(table.loc[table["class"].isin(["sd", "sigma"]), "lb"]) == {"0"}


def test_mad_is_r_mad():
    # median 4, absolute deviations 3, 2, 0, 3, 16: their median is 3
    assert r_mad(np.array([1.0, 2.0, 4.0, 7.0, 20.0])) == pytest.approx(1.4826 * 3.0)


def test_uncorrelated_terms_have_no_cor_prior_and_small_data_get_the_minimum_scale():
    df = load_sleepstudy().assign(Reaction=lambda d: d.Reaction / 1000)
    classes = [p.class_ for p in default_priors(parse_terms("Reaction ~ Days + (Days || Subject)", df))]
    assert "cor" not in classes and classes.count("sd") == 1
    assert default_priors(parse_terms("Reaction ~ Days", df))[0].args[2] == 2.5  # mad below 2.5


@pytest.mark.parametrize("spec, kwargs, message", [
    ("", {}, "flat or improper"),
    ("flat", {}, "flat or improper"),
    ("uniform(0, 10)", {}, "flat or improper"),
    ("normal(0, -1)", {}, "improper or has a non-positive scale"),
    ("normal(0)", {}, "normal takes 2 argument"),
    ("normal(0, a)", {}, "arguments must be numbers"),
    ("laplace(0, 1)", {}, "unknown prior distribution 'laplace'"),
    ("normal(0, 1)", {"class_": "beta"}, "unknown prior class 'beta'"),
    ("normal(0, 1)", {"class_": "cor"}, "class 'cor' takes an lkj prior"),
])
def test_bad_priors_name_the_problem(spec, kwargs, message):
    with pytest.raises(ValueError, match=message):
        prior(spec, **kwargs)


def test_user_priors_replace_defaults_by_class_or_coefficient():
    from amortbayes.formula.priors import combine_priors

    terms = parse_terms("Reaction ~ Days + (Days | Subject)", load_sleepstudy())
    defaults = default_priors(terms)
    out = combine_priors([prior("normal(0, 5)", class_="b", coef="Days"), prior("exponential(1)", class_="sd")],
                         defaults, terms)
    by = {(p.class_, p.coef): p for p in out}
    assert by[("b", "Days")].stan() == "normal(0, 5)" and by[("b", "Days")].source == "user"
    assert by[("sd", "")].stan() == "exponential(1)"
    assert by[("Intercept", "")].source == "default" and len(out) == len(defaults)
    with pytest.raises(ValueError, match="coefficient 'Dayz' of class 'b', which the model does not have"):
        combine_priors([prior("normal(0, 5)", coef="Dayz")], defaults, terms)
    with pytest.raises(ValueError, match="class 'nu', but the model has no such parameter"):
        combine_priors([prior("gamma(2, 0.1)", class_="nu")], defaults, terms)


@pytest.mark.parametrize("spec, class_", [
    ("normal(1, 2)", "b"), ("student_t(3, 288.7, 59.3)", "Intercept"), ("student_t(3, 0, 2.5)", "sd"),
    ("normal(5, 2)", "sigma"), ("cauchy(0, 1)", "sd"), ("exponential(2)", "sigma"), ("gamma(2, 0.1)", "nu"),
])
def test_prior_draws_and_density_are_the_truncated_distribution(spec, class_):
    import torch
    from scipy import stats

    p = prior(spec, class_=class_)
    draws = p.sample(20_000, torch.Generator().manual_seed(3)).numpy()
    d = p._scipy()
    lo = p.lower if p.lower is not None else -np.inf
    truncated_cdf = (lambda v: (d.cdf(v) - d.cdf(lo)) / d.sf(lo)) if p.lower is not None else d.cdf
    assert draws.min() > lo
    assert stats.kstest(draws, truncated_cdf).pvalue > 0.001
    x = torch.tensor(np.quantile(draws, [0.1, 0.5, 0.9]), dtype=torch.float64)
    np.testing.assert_allclose(p.log_prob(x).numpy(), d.logpdf(x.numpy()) - (d.logsf(lo) if p.lower is not None else 0),
                               rtol=1e-8)
    if p.lower is not None:
        assert p.log_prob(torch.tensor([p.lower - 0.5], dtype=torch.float64)).item() == -np.inf
