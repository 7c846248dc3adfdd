"""The SBI benchmark tasks (benchmarks/_sbi_tasks.py): simulators, and reference posteriors checked against truth.

Every reference sampler is checked by simulation-based calibration (the rank of the true
parameter among the reference draws of data simulated from it is uniform), with a
tolerance that the same draws with their spread inflated by sqrt(2) (posterior variance
doubled) fail, and against an independent computation of the posterior: closed forms,
numerical integration on a grid, or self-normalized importance sampling with likelihoods
written here from scratch.  Seeds are fixed, so every test is deterministic.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import stats
from scipy.special import logsumexp

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))

import _sbi_tasks as S  # noqa: E402
from _sbi_tasks import TASKS, Task  # noqa: E402

from amortbayes.diagnostics import pareto_khat  # noqa: E402
from amortbayes.simulation import FlatModel  # noqa: E402

torch.set_num_threads(1)

NAMES = ["gaussian_linear", "two_moons", "slcp", "bernoulli_glm", "ar1", "gaussian_mixture"]
SBC_SIMS = {"gaussian_linear": 400, "two_moons": 300, "slcp": 60, "bernoulli_glm": 150, "ar1": 300,
            "gaussian_mixture": 400}
SBC_DRAWS = 99  # ranks 0..99, ten bins of ten ranks


def in_support(name: str, draws: np.ndarray) -> bool:
    """Whether every draw lies in the prior's support."""
    if name == "two_moons":
        return bool(np.all(np.abs(draws) <= 1.0))
    if name == "slcp":
        return bool(np.all(np.abs(draws) < 3.0))
    if name == "gaussian_mixture":
        return bool(np.all(np.abs(draws) < 10.0))
    if name == "ar1":
        return bool(np.all(np.abs(draws[:, 1]) < 1.0) and np.all(draws[:, 2] > 0))
    return bool(np.all(np.isfinite(draws)))


def sbc_pvalues(ranks: np.ndarray, bins: int = 10) -> np.ndarray:
    """Chi-square p-value of the rank histogram, per parameter; ``ranks (S, D)`` in ``0..SBC_DRAWS``."""
    width = (SBC_DRAWS + 1) // bins
    counts = np.stack([np.bincount(r // width, minlength=bins) for r in ranks.T])
    return stats.chisquare(counts, axis=1).pvalue


def inflate(draws: np.ndarray, factor: float = math.sqrt(2.0)) -> np.ndarray:
    """A wrong posterior: the draws ``(..., n, D)`` spread ``factor`` times wider about their mean."""
    mean = draws.mean(-2, keepdims=True)
    return mean + factor * (draws - mean)


def weighted_moments(values: np.ndarray, log_w: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """Self-normalized importance-sampling means, standard deviations and ESS."""
    w = np.exp(log_w - logsumexp(log_w))
    mean = w @ values
    sd = np.sqrt(w @ (values - mean) ** 2)
    return mean, sd, float(1.0 / np.sum(w**2))


def khat(log_w: np.ndarray) -> float:
    """Pareto k-hat of the non-zero importance weights (the generalized-Pareto fit may overflow harmlessly)."""
    with np.errstate(over="ignore"):
        return pareto_khat(log_w[np.isfinite(log_w)])


def agrees(draws: np.ndarray, mean: np.ndarray, sd: np.ndarray, mean_tol: float, sd_tol: float) -> bool:
    """Means within ``mean_tol`` reference SDs and SDs within a ratio ``1 +- sd_tol``."""
    ok_mean = np.abs(draws.mean(0) - mean) / sd < mean_tol
    ok_sd = np.abs(draws.std(0) / sd - 1.0) < sd_tol
    return bool(np.all(ok_mean) and np.all(ok_sd))


# --------------------------------------------------------------------------------------------
# interface, simulators, shapes, support, determinism, cache
# --------------------------------------------------------------------------------------------


def test_suite_has_the_tasks_with_their_interface():
    assert set(NAMES) <= set(TASKS)
    for name in NAMES:
        task = TASKS[name]
        assert isinstance(task, Task) and task.name == name
        assert isinstance(task.model, FlatModel)
        assert task.summary in {"none", "deepset", "conv", "recurrent"}
        assert task.description and "\n" not in task.description
        support = task.model.parameter_support
        assert len(support) in (0, len(task.model.parameter_names))
    assert TASKS["slcp"].summary == "deepset" and TASKS["ar1"].summary == "conv"
    assert TASKS["ar1"].model.parameter_support == ("real", "correlation", "positive")


@pytest.mark.parametrize("name", NAMES)
def test_simulator_shapes_dtypes_reproducible(name):
    model = TASKS[name].model
    batch = model.simulate(64, torch.Generator().manual_seed(3))
    n = model.n_obs[1]
    d, f = len(model.parameter_names), len(model.data_names)
    assert batch["theta_global"].shape == (64, d) and batch["x"].shape == (64, n, f) and batch["mask"].shape == (64, n)
    assert all(v.dtype == torch.float32 for v in batch.values())
    assert all(bool(torch.isfinite(v).all()) for v in batch.values())
    assert bool((batch["mask"] == 1).all())
    assert in_support(name, batch["theta_global"].numpy().astype(float))
    again = model.simulate(64, torch.Generator().manual_seed(3))
    assert all(torch.equal(batch[k], again[k]) for k in batch)
    other = model.simulate(64, torch.Generator().manual_seed(4))
    assert not torch.equal(batch["x"], other["x"])


@pytest.mark.parametrize("name", NAMES)
def test_observations_and_reference_shapes(name):
    task = TASKS[name]
    model = task.model
    obs = task.observations(3, seed=1000)
    assert len(obs) == 3
    assert all(x.shape == (model.n_obs[1], len(model.data_names)) for x in obs)
    # fixed, and observation i does not depend on how many are asked for
    assert all(np.array_equal(a, b) for a, b in zip(obs[:2], task.observations(2, seed=1000)))
    assert not np.array_equal(obs[0], task.observations(1, seed=2000)[0])
    assert task.true_parameters(3).shape == (3, len(model.parameter_names))
    draws = task.reference_posterior(obs[0], 300, seed=5, cache=False)
    assert draws.shape == (300, len(model.parameter_names)) and np.all(np.isfinite(draws))
    assert in_support(name, draws)
    assert np.array_equal(draws, task.reference_posterior(obs[0], 300, seed=5, cache=False))
    assert not np.array_equal(draws, task.reference_posterior(obs[0], 300, seed=6, cache=False))
    # sbi wants flat x: one vector per data set
    assert task.flat(obs[0]).shape == (1, obs[0].size)
    batch = model.simulate(4, torch.Generator().manual_seed(0))
    assert tuple(task.flat(batch["x"]).shape) == (4, obs[0].size)


def test_reference_posterior_rejects_bad_data():
    with pytest.raises(ValueError, match="shape"):
        TASKS["slcp"].reference_posterior(np.zeros((4, 3)), 10)
    with pytest.raises(ValueError, match="NaN"):
        TASKS["ar1"].reference_posterior(np.full((50, 1), np.nan), 10)


def test_mcmc_references_are_cached_by_observation_n_and_seed(tmp_path):
    task = TASKS["slcp"]
    x0, x1 = task.observations(2)
    first, info = task.reference_posterior(x0, 50, seed=1, cache=tmp_path, return_info=True)
    assert not info["cached"] and len(list(tmp_path.glob("slcp_*.npz"))) == 1
    again, info = task.reference_posterior(x0, 50, seed=1, cache=tmp_path, return_info=True)
    assert info["cached"] and np.array_equal(first, again) and "rhat_max" in info
    task.reference_posterior(x1, 50, seed=1, cache=tmp_path)
    task.reference_posterior(x0, 50, seed=2, cache=tmp_path)
    assert len(list(tmp_path.glob("slcp_*.npz"))) == 3
    # exact samplers are not cached by default
    TASKS["ar1"].reference_posterior(TASKS["ar1"].observations(1)[0], 50)
    assert S.REFERENCE_DIR.name == "reference" and S.REFERENCE_DIR.parent.name == "results"


# --------------------------------------------------------------------------------------------
# calibration of every reference sampler
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_reference_is_calibrated_and_the_check_has_power(name):
    """SBC: uniform ranks of the truth (Bonferroni over parameters); doubled posterior variance fails."""
    task = TASKS[name]
    batch = task.model.simulate(SBC_SIMS[name], torch.Generator().manual_seed(11))
    truth = batch["theta_global"].numpy().astype(np.float64)
    draws = task.reference_posterior_batch(batch["x"].numpy(), SBC_DRAWS, seed=12)
    assert draws.shape == (SBC_SIMS[name], SBC_DRAWS, truth.shape[1])
    p = sbc_pvalues(np.sum(draws < truth[:, None, :], axis=1))
    assert p.min() * len(p) > 1e-3, f"{name}: SBC p-values {np.round(p, 5)}"
    p_wrong = sbc_pvalues(np.sum(inflate(draws) < truth[:, None, :], axis=1))
    assert p_wrong.min() * len(p_wrong) < 1e-4, f"{name}: SBC cannot tell a too-wide posterior, {p_wrong}"


# --------------------------------------------------------------------------------------------
# each reference against an independent computation of its posterior
# --------------------------------------------------------------------------------------------


def test_gaussian_linear_matches_closed_form():
    task = TASKS["gaussian_linear"]
    x = task.observations(1)[0]
    draws = task.reference_posterior(x, 20_000, seed=0)
    # prior N(0, 0.1), noise N(0, 0.1), one observation: posterior N(x / 2, 0.05) per component
    mean, sd = x[0] / 2.0, np.full(10, math.sqrt(0.05))
    assert agrees(draws, mean, sd, mean_tol=0.04, sd_tol=0.03)
    assert not agrees(inflate(draws), mean, sd, mean_tol=0.04, sd_tol=0.03)
    assert abs(np.corrcoef(draws.T)[0, 1]) < 0.05


def test_two_moons_matches_numerical_integration():
    task = TASKS["two_moons"]
    x = task.observations(1)[0][0].astype(np.float64)
    g = np.linspace(-1, 1, 1601)
    t1, t2 = np.meshgrid(g, g, indexing="ij")
    # likelihood: x = p - (|t1 + t2|, t1 - t2) / sqrt 2, p = (r cos a + 0.25, r sin a),
    # a ~ U(-pi/2, pi/2), r ~ N(0.1, 0.01): density of p is N(r; 0.1, 0.01) / (pi r) for p_1 > 0.25
    p1 = x[0] + np.abs(t1 + t2) / math.sqrt(2)
    p2 = x[1] + (t1 - t2) / math.sqrt(2)
    r = np.hypot(p1 - 0.25, p2)
    dens = np.where(p1 > 0.25, stats.norm.pdf(r, 0.1, 0.01) / (math.pi * r), 0.0)
    w = dens / dens.sum()
    mean = np.array([(w * t1).sum(), (w * t2).sum()])
    sd = np.sqrt(np.array([(w * (t1 - mean[0]) ** 2).sum(), (w * (t2 - mean[1]) ** 2).sum()]))
    upper = (w * (t1 + t2 > 0)).sum()
    draws = task.reference_posterior(x, 20_000, seed=0)
    assert agrees(draws, mean, sd, mean_tol=0.04, sd_tol=0.03)
    assert abs(np.mean(draws.sum(1) > 0) - upper) < 0.02
    assert not agrees(inflate(draws), mean, sd, mean_tol=0.04, sd_tol=0.03)


def _gaussian_mixture_exact(x: np.ndarray, lo: float = -10.0, hi: float = 10.0, half_width: float = 0.3):
    """Posterior mean, SD and P(|theta - x|_inf < half_width) of the box-truncated mixture, from truncated normals."""
    comps = []
    for scale in (1.0, 0.1):
        a, b = (lo - x) / scale, (hi - x) / scale
        mass = np.prod(stats.norm.cdf(b) - stats.norm.cdf(a))
        tn = stats.truncnorm(a, b, loc=x, scale=scale)
        inner = np.prod(tn.cdf(x + half_width) - tn.cdf(x - half_width))
        comps.append((0.5 * mass, tn.mean(), tn.var(), inner))
    total = sum(c[0] for c in comps)
    weights = np.array([c[0] / total for c in comps])
    mean = sum(w * c[1] for w, c in zip(weights, comps))
    second = sum(w * (c[2] + c[1] ** 2) for w, c in zip(weights, comps))
    inner = sum(w * c[3] for w, c in zip(weights, comps))
    return weights, mean, np.sqrt(second - mean**2), inner


@pytest.mark.parametrize("x", [(0.3, -1.2), (9.6, -9.8)])
def test_gaussian_mixture_matches_the_truncated_mixture(x):
    """Near a corner the truncation shifts the mixture weights towards the narrow component."""
    x = np.array(x)
    weights, mean, sd, inner = _gaussian_mixture_exact(x)
    if x[0] > 9:
        assert weights[1] > 0.7  # the wide component loses most of its mass outside the box
    draws = TASKS["gaussian_mixture"].reference_posterior(x[None], 40_000, seed=0)
    assert agrees(draws, mean, sd, mean_tol=0.03, sd_tol=0.03)
    share = np.mean(np.all(np.abs(draws - x) < 0.3, axis=1))
    assert abs(share - inner) < 4 * math.sqrt(inner * (1 - inner) / len(draws))
    assert not agrees(inflate(draws), mean, sd, mean_tol=0.03, sd_tol=0.03)


def _ar1_log_likelihood(theta: np.ndarray, series: np.ndarray) -> np.ndarray:
    """``log p(x_1..x_T | c, phi, sigma)`` from ``x_0 = 0`` by the recursion."""
    c, phi, sigma = theta[:, 0], theta[:, 1], theta[:, 2]
    prev, total = np.zeros(len(theta)), np.zeros(len(theta))
    for value in series:
        total += stats.norm.logpdf(value, c + phi * prev, sigma)
        prev = np.full(len(theta), value)
    return total


def test_ar1_short_series_matches_importance_sampling_from_the_prior():
    """With T = 4 the prior matters: the exact sampler agrees with prior importance sampling, a doubled prior variance does not."""
    model = S.AR1Series(n_obs=(4, 4))
    task = Task("ar1_short", model, "recurrent", "AR(1), 4 steps", S._ar1_sampler(model))
    theta_prior = model.sample_prior(400_000, torch.Generator().manual_seed(0)).numpy().astype(np.float64)
    for i in range(3):
        _, x = task.observation(i, seed=77)
        mean, sd, ess = weighted_moments(theta_prior, _ar1_log_likelihood(theta_prior, x[:, 0]))
        assert ess > 20_000
        draws = task.reference_posterior(x, 40_000, seed=i)
        assert agrees(draws, mean, sd, mean_tol=0.04, sd_tol=0.03), (draws.mean(0), mean, draws.std(0), sd)
    wrong = S._ar1_sampler(S.AR1Series(v0=(2.0, 0.5), n_obs=(4, 4)))
    draws = wrong(x[None].astype(np.float64), 40_000, np.random.default_rng(0))[0][0]
    assert not agrees(draws, mean, sd, mean_tol=0.04, sd_tol=0.03)


def test_ar1_long_series_matches_importance_sampling():
    task = TASKS["ar1"]
    _, x = task.observation(0)
    draws = task.reference_posterior(x, 20_000, seed=0)
    # proposal: a wide Student-t around the draws (importance sampling corrects any mismatch)
    mean0, cov0 = draws.mean(0), np.cov(draws.T)
    q = stats.multivariate_t(loc=mean0, shape=4 * cov0, df=5, seed=1)
    theta = q.rvs(200_000)
    log_prior = _ar1_log_prior(theta, task.model)
    log_w = np.where(np.isfinite(log_prior), log_prior + _ar1_log_likelihood(theta, x[:, 0]) - q.logpdf(theta), -np.inf)
    assert khat(log_w) < 0.5
    mean, sd, _ = weighted_moments(theta, log_w)
    assert agrees(draws, mean, sd, mean_tol=0.04, sd_tol=0.04)
    assert not agrees(inflate(draws), mean, sd, mean_tol=0.04, sd_tol=0.04)


def _ar1_log_prior(theta: np.ndarray, model) -> np.ndarray:
    """Unnormalized truncated NIG prior density of ``(c, phi, sigma)`` (sigma, not sigma^2: Jacobian 2 sigma)."""
    c, phi, sigma = theta.T
    ok = (np.abs(phi) < 1) & (sigma > 0)
    s = np.where(ok, sigma, 1.0)
    lp = (stats.invgamma.logpdf(s**2, model.a0, scale=model.b0) + np.log(2 * s)
          + stats.norm.logpdf(c, 0, s * math.sqrt(model.v0[0])) + stats.norm.logpdf(phi, 0, s * math.sqrt(model.v0[1])))
    return np.where(ok, lp, -np.inf)


def _slcp_log_likelihood(theta: np.ndarray, x: np.ndarray) -> np.ndarray:
    """``sum_i log N(x_i; m, S)`` with torch's multivariate normal, written apart from the module's formulas."""
    th = torch.as_tensor(theta, dtype=torch.float64)
    s1, s2, rho = th[:, 2] ** 2, th[:, 3] ** 2, torch.tanh(th[:, 4])
    cov = torch.stack([torch.stack([s1**2, rho * s1 * s2], -1), torch.stack([rho * s1 * s2, s2**2], -1)], -2)
    dist = torch.distributions.MultivariateNormal(th[:, :2], covariance_matrix=cov)
    xt = torch.as_tensor(x, dtype=torch.float64)
    return sum(dist.log_prob(row) for row in xt).numpy()


def test_slcp_matches_importance_sampling_and_is_symmetric():
    task = TASKS["slcp"]
    x = task.observations(1)[0].astype(np.float64)
    draws, info = task.reference_posterior(x, 10_000, seed=0, cache=False, return_info=True)
    assert info["rhat_max"] < 1.01 and info["ess_bulk_thinned_min"] > 0.5 * info["n_thinned"], info
    # four modes: the signs of theta_3 and theta_4 are independent fair coins
    quadrant = 2 * (draws[:, 2] > 0) + (draws[:, 3] > 0)
    assert np.all(np.abs(np.bincount(quadrant, minlength=4) / len(draws) - 0.25) < 0.02)
    # importance sampling of the folded posterior (theta_3, theta_4 > 0), defensive proposal:
    # 90 % a wide Student-t around the draws, 10 % uniform on the folded prior box (bounded weights;
    # the posterior has a thin tail towards large s_1, s_2 and rho near 0 that a t alone can miss)
    folded = draws.copy()
    folded[:, 2:4] = np.abs(folded[:, 2:4])
    lo, hi = np.array([-3, -3, 0, 0, -3.0]), np.full(5, 3.0)
    t = stats.multivariate_t(loc=folded.mean(0), shape=2 * np.cov(folded.T), df=5, seed=2)
    rng = np.random.default_rng(2)
    theta = np.concatenate([t.rvs(360_000), rng.uniform(lo, hi, (40_000, 5))])
    inside = np.all((theta > lo) & (theta < hi), axis=1)
    log_q = np.logaddexp(math.log(0.9) + t.logpdf(theta), math.log(0.1) - np.log(np.prod(hi - lo)))
    log_w = np.full(len(theta), -np.inf)
    log_w[inside] = _slcp_log_likelihood(theta[inside], x) - log_q[inside]
    assert khat(log_w) < 0.5
    assert weighted_moments(theta, log_w)[2] > 20_000
    # quantiles, not moments: the posterior has thin tails (towards large s_1, s_2) that make SDs noisy
    probs = np.array([0.05, 0.25, 0.5, 0.75, 0.95])
    w = np.exp(log_w - logsumexp(log_w))
    expected = np.empty((len(probs), 5))
    for j in range(5):
        order = np.argsort(theta[:, j])
        expected[:, j] = theta[order, j][np.searchsorted(np.cumsum(w[order]), probs)]
    scale = (expected[3] - expected[1]) / 1.349  # IQR in SD units of a normal
    error = np.abs(np.quantile(folded, probs, axis=0) - expected) / scale
    assert error.max() < 0.15, error  # Monte Carlo noise of 10,000 draws: up to ~0.1 over these 25
    assert (np.abs(np.quantile(inflate(folded), probs, axis=0) - expected) / scale).max() > 0.2


def test_bernoulli_glm_design_prior_and_sufficiency():
    model = TASKS["bernoulli_glm"].model
    X = model.design()
    assert X.shape == (100, 10) and np.all(X[:, 0] == 1)
    assert np.allclose(X[1:, 2:], X[:-1, 1:-1])  # column k + 1 is the stimulus lagged by k
    assert np.array_equal(X, model.design())
    cov = model.prior_cov()
    assert np.allclose(np.diag(cov), [2.0] + [0.25] * 9) and np.isclose(cov[1, 2], 0.25 * 0.8)
    theta = model.sample_prior(200_000, torch.Generator().manual_seed(0)).numpy()
    assert np.allclose(np.cov(theta.T), cov, atol=0.02)


def test_bernoulli_glm_matches_importance_sampling_given_y():
    """Reference draws given X'y agree with importance sampling of p(beta | y) (Bernoulli likelihood of the trials)."""
    task = TASKS["bernoulli_glm"]
    model = task.model
    X = model.design()
    rng = np.random.default_rng(4)
    beta_true = rng.multivariate_normal(np.zeros(10), model.prior_cov())
    y = (rng.random(100) < 1 / (1 + np.exp(-X @ beta_true))).astype(np.float64)
    draws, info = task.reference_posterior((X.T @ y)[None], 10_000, seed=0, cache=False, return_info=True)
    assert info["pareto_khat"] < 0.5 and info["tv_bound"] < 1e-3 and info["rhat_max"] < 1.05, info
    q = stats.multivariate_t(loc=draws.mean(0), shape=2 * np.cov(draws.T), df=5, seed=3)
    beta = q.rvs(100_000)
    logits = torch.as_tensor(beta @ X.T)
    log_lik = torch.distributions.Bernoulli(logits=logits).log_prob(torch.as_tensor(y)).sum(-1).numpy()
    log_prior = stats.multivariate_normal(np.zeros(10), model.prior_cov()).logpdf(beta)
    log_w = log_lik + log_prior - q.logpdf(beta)
    assert khat(log_w) < 0.5
    mean, sd, ess = weighted_moments(beta, log_w)
    assert ess > 20_000
    assert agrees(draws, mean, sd, mean_tol=0.06, sd_tol=0.05), (draws.mean(0), mean, draws.std(0), sd)
    assert not agrees(inflate(draws), mean, sd, mean_tol=0.06, sd_tol=0.05)
