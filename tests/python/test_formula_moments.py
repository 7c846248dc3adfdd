"""The moments layout of gaussian formula models against the rows layout: same data, same likelihood, same networks.

A gaussian (or lognormal) formula model holds each group as its moment sums
(:mod:`amortbayes.moments`) and simulates them without rows; the rows layout of the same
formula is the reference: its densities are checked against scipy in test_formula_model.py.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("formulae")

from amortbayes.amortizers import MultilevelAmortizer  # noqa: E402
from amortbayes.data import load_exam, load_sleepstudy  # noqa: E402
from amortbayes.formula import parse_terms  # noqa: E402
from amortbayes.formula.fit import network_settings  # noqa: E402
from amortbayes.formula.model import FormulaModel  # noqa: E402
from amortbayes.moments import row_moments  # noqa: E402

F64 = torch.float64


def _pair(formula, data, family="gaussian"):
    t = parse_terms(formula, data)
    return FormulaModel(t, family), FormulaModel(t, family, group_data="rows")


@pytest.fixture(scope="module")
def exam():
    d = load_exam()
    return d[d.school.cat.codes < 20].assign(school=lambda f: f.school.cat.remove_unused_categories())


def _to_moments(moments_model, rows_model, x, mask):
    """The moment rows of row-layout data ``x (B, J, N, F)`` as the moments model stores them."""
    cols = rows_model.P + rows_model.K
    design = x[..., :cols][..., moments_model.layout.design_cols]
    rc = torch.cat([design, x[..., -1:]], -1).double() - torch.tensor(moments_model.row_shift, dtype=F64)
    return row_moments(rc, mask.double())


@pytest.mark.parametrize("family", ["gaussian", "lognormal"])
def test_the_moments_likelihood_and_group_marginals_equal_the_rows_ones(family):
    mm, mr = _pair("Reaction ~ Days + (Days | Subject)", load_sleepstudy(), family)
    assert mm.group_data == "moments" and mm.info.n_obs == (1, 1)
    assert mm.row_names == ("Days", "log(Reaction)" if family == "lognormal" else "Reaction")
    gen = torch.Generator().manual_seed(0)
    theta = mm.sample_global(6, gen)
    r = mm.sample_local(theta, 18, gen)
    xm = torch.as_tensor(np.stack(mm.observed()), dtype=F64)  # (18, 1, 6)
    xr = torch.as_tensor(np.stack(mr.observed()), dtype=F64)  # (18, 10, 5)
    ll_m = mm.log_likelihood(theta, r, xm, torch.ones(18, 1, dtype=F64))
    ll_r = mr.log_likelihood(theta, r, xr, torch.ones(18, 10, dtype=F64))
    torch.testing.assert_close(ll_m, ll_r, rtol=1e-6, atol=1e-4)
    for j in (0, 7):
        torch.testing.assert_close(mm.group_log_marginal(theta, xm[j], torch.ones(1, dtype=F64)),
                                   mr.group_log_marginal(theta, xr[j], torch.ones(10, dtype=F64)), rtol=1e-6, atol=1e-4)
        a = mm.sample_local_posterior(theta, xm[j], torch.ones(1, dtype=F64), torch.Generator().manual_seed(3))
        b = mr.sample_local_posterior(theta, xr[j], torch.ones(10, dtype=F64), torch.Generator().manual_seed(3))
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-4)


def test_all_groups_exact_draws_of_many_global_draws_are_each_groups_conjugate_posterior():
    # the batched path (one (S, 1, G) block of global draws against every group: batched products)
    # against the conjugate posterior of r_j given the globals, group by group
    mm, mr = _pair("Reaction ~ Days + (Days | Subject)", load_sleepstudy())
    theta = mm.sample_global(1, torch.Generator().manual_seed(5))
    S = 20_000
    xm = torch.as_tensor(np.stack(mm.observed()), dtype=F64)
    r = mm.sample_local_posteriors(theta.expand(S, -1)[:, None], xm, torch.ones(18, 1, dtype=F64),
                                   torch.Generator().manual_seed(6)).numpy()  # (S, 18, 2)
    assert r.shape == (S, 18, 2)
    sd, cor, sigma = theta[0, 2:4].numpy(), theta[0, 4].item(), theta[0, 5].item()
    prior_cov = np.diag(sd) @ np.array([[1, cor], [cor, 1]]) @ np.diag(sd)
    for j in (0, 9, 17):
        rows = np.asarray(mr.observed()[j], dtype=np.float64)
        Z, X, y = rows[:, 2:4], rows[:, :2], rows[:, 4]
        V = np.linalg.inv(np.linalg.inv(prior_cov) + Z.T @ Z / sigma**2)
        m = V @ Z.T @ (y - X @ theta[0, :2].numpy()) / sigma**2
        np.testing.assert_allclose(r[:, j].mean(0), m, atol=4 * np.sqrt(np.diag(V) / S).max())
        np.testing.assert_allclose(np.cov(r[:, j].T), V, rtol=0.05, atol=0.03 * np.sqrt(V[0, 0] * V[1, 1]))


def test_amortized_draws_with_exact_group_effects_keep_the_networks_global_draws():
    mm, _ = _pair("Reaction ~ Days + (Days | Subject)", load_sleepstudy())
    amortizer = MultilevelAmortizer(mm, network_settings(mm))
    amortizer.adapt(mm.simulate(64, torch.Generator().manual_seed(0)))
    data = mm.simulate(2, torch.Generator().manual_seed(1))
    data["group_mask"][1, 5:] = 0  # a data set of fewer groups: its padded groups stay NaN
    data["mask"][1, 5:] = 0
    flow = amortizer.sample_draws(data, 50, seed=3)
    exact = amortizer.sample_draws(data, 50, seed=3, exact_local=mm.sample_local_posteriors)
    np.testing.assert_array_equal(flow.global_draws, exact.global_draws)
    for k in range(2):
        valid = data["group_mask"][k].numpy() > 0
        assert np.isfinite(exact.local_draws[k][:, valid]).all() and np.isnan(exact.local_draws[k][:, ~valid]).all()
    assert not np.allclose(flow.local_draws[0], exact.local_draws[0])


def test_a_padded_group_adds_nothing_to_the_moments_likelihood():
    mm, _ = _pair("Reaction ~ Days + (1 | Subject)", load_sleepstudy())
    theta = mm.sample_global(2, torch.Generator().manual_seed(1))
    r = mm.sample_local(theta, 3, torch.Generator().manual_seed(2))
    x = torch.as_tensor(np.stack(mm.observed()[:3]), dtype=F64)
    mask = torch.tensor([[1.0], [1.0], [0.0]], dtype=F64)
    ll = mm.log_likelihood(theta, r, x, mask)
    assert torch.all(ll[:, 2] == 0) and torch.isfinite(ll).all()


def test_simulated_moments_have_the_distribution_of_moments_of_simulated_rows(exam):
    # same parameters, same user groups: the moment rows the model draws directly against the
    # moment rows of rows drawn by the rows layout, 20,000 replicates each
    mm, mr = _pair("normexam ~ standLRT + sex + (standLRT | school)", exam)
    assert mm.row_names == ("standLRT", "sexM", "normexam")
    gen = torch.Generator().manual_seed(0)
    theta = mm.sample_global(1, gen)
    loc = mm.sample_local(theta, 3, gen)
    reps = 20_000
    th, lo = theta.expand(reps, -1), loc.expand(reps, -1, -1)
    user = torch.tensor([[5, 0, 13]]).expand(reps, -1)  # schools of 80, 73 and 2 pupils
    direct = mm.layout.simulate(th, lo, user, gen)[..., 0, :]
    sizes = mr._user_sizes[user]
    rows = mr._user_design[user, : int(sizes.max())]
    mask = (torch.arange(rows.shape[2])[None, None] < sizes[..., None]).to(F64)
    via_rows = _to_moments(mm, mr, mr._simulate_response(th, lo, rows, gen), mask)[..., 0, :]
    var = (direct.var(0) + via_rows.var(0)) / reps
    random = var > 1e-10  # the design's own sums are the same constants in both
    torch.testing.assert_close(direct.mean(0)[~random], via_rows.mean(0)[~random], rtol=1e-6, atol=1e-6)
    z = (direct.mean(0) - via_rows.mean(0))[random] / var[random].sqrt()
    assert z.abs().max() < 4.0, z
    ratio = direct.var(0)[random] / via_rows.var(0)[random]
    assert ratio.min() > 0.93 and ratio.max() < 1.07, ratio


def test_the_amortizer_reads_moments_and_rows_alike(exam):
    # the same networks (same seed) fed the same data sets as moment rows and as rows: the same
    # standardization, range check, embeddings, pilot and loss
    mm, mr = _pair("normexam ~ standLRT + (standLRT | school)", exam)
    sm, sr = network_settings(mm), network_settings(mr)
    assert not sm.group_row_network and not sr.group_row_network
    a_m, a_r = MultilevelAmortizer(mm, sm), MultilevelAmortizer(mr, sr)
    batch = mr.simulate(64, torch.Generator().manual_seed(4))
    moments = dict(batch, x=_to_moments(mm, mr, batch["x"], batch["mask"]).float(),
                   mask=batch["group_mask"][..., None])
    a_r.adapt(batch)
    a_m.adapt(moments)
    cols = [mr.data_names.index(c) for c in ("X:standLRT", "normexam")]
    shift = torch.tensor(mm.row_shift, dtype=torch.float32)  # the moments are of the columns less their means
    torch.testing.assert_close(a_m.x_std.mean + shift, a_r.x_std.mean[cols], rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(a_m.x_std.std, a_r.x_std.std[cols], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(a_m.data_range.low, a_r.data_range.low[[1, 4, 6, 9, 11, 14]], rtol=1e-4, atol=1e-4)
    ga, sa = a_m.embed(moments["x"], moments["mask"], moments["group_mask"])
    gb, sb = a_r.embed(batch["x"], batch["mask"], batch["group_mask"])
    torch.testing.assert_close(ga, gb, rtol=1e-3, atol=1e-2)  # float32 rows against float64 sums
    torch.testing.assert_close(sa, sb, rtol=1e-2, atol=1e-2)
    torch.testing.assert_close(a_m.loss(moments), a_r.loss(batch), rtol=1e-4, atol=1e-3)


def test_moments_are_refused_for_families_that_need_rows():
    t = parse_terms("Reaction ~ Days + (1 | Subject)", load_sleepstudy())
    with pytest.raises(ValueError, match="depends on a group's rows beyond their moments"):
        FormulaModel(t, "student", group_data="moments")
    with pytest.raises(ValueError, match="group_data must be 'rows' or 'moments'"):
        FormulaModel(t, "gaussian", group_data="sums")
    with pytest.raises(ValueError, match="n_obs= resamples a group's rows"):
        FormulaModel(t, "gaussian", n_obs=(2, 10), group_data="moments")
    with pytest.raises(ValueError, match="only a DeepSet group summary without a row network"):
        from amortbayes.amortizers.multilevel import MultilevelSettings

        MultilevelAmortizer(FormulaModel(t), MultilevelSettings())


def test_moment_rows_of_a_large_design_stay_exact_in_float32():
    # y far from zero: float32 sums of squares of 150 + e would lose e's spread; the shift keeps it
    d = load_sleepstudy().assign(Reaction=lambda f: f.Reaction + 1e5)
    mm, mr = _pair("Reaction ~ Days + (1 | Subject)", d)
    theta = torch.tensor([[1e5 + 250.0, 10.0, 30.0, 25.0]], dtype=F64)
    r = torch.zeros(1, 18, 1, dtype=F64)
    ll_m = mm.log_likelihood(theta, r, torch.as_tensor(np.stack(mm.observed()), dtype=F64), torch.ones(18, 1, dtype=F64))
    ll_r = mr.log_likelihood(theta, r, torch.as_tensor(np.stack(mr.observed()), dtype=F64), torch.ones(18, 10, dtype=F64))
    torch.testing.assert_close(ll_m, ll_r, rtol=1e-6, atol=1e-3)
