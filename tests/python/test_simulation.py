"""The batch contract: shapes, dtypes, masks, ragged data, and padding that changes nothing."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from amortbayes.models import ConjugateGaussian, GaussianLinearRegression, TwoMoons, get_model
from amortbayes.networks import DeepSet, RecurrentSummary, SetTransformer, Standardizer, TemporalConv
from amortbayes.simulation import pad_datasets, prepare_observed


@pytest.mark.parametrize("model", [ConjugateGaussian(), GaussianLinearRegression(), TwoMoons()])
def test_batches_are_named_float32_tensors_with_masks(model):
    batch = model.simulate(64, torch.Generator().manual_seed(0))
    d, f = len(model.parameter_names), len(model.data_names)
    assert set(batch) == {"theta_global", "x", "mask"}
    assert all(v.dtype == torch.float32 for v in batch.values())
    assert batch["theta_global"].shape == (64, d)
    n_max = batch["x"].shape[1]
    assert batch["x"].shape == (64, n_max, f) and batch["mask"].shape == (64, n_max)
    sizes = batch["mask"].sum(1)
    lo, hi = model.n_obs
    assert sizes.min() >= lo and sizes.max() <= hi
    # observed rows are a prefix and padded rows are exactly zero
    assert torch.all(batch["mask"][:, :-1] >= batch["mask"][:, 1:])
    assert torch.all(batch["x"][batch["mask"] == 0] == 0)


def test_sizes_vary_within_a_batch_and_cover_the_range():
    model = ConjugateGaussian(n_obs=(3, 9))
    sizes = model.simulate(2000, torch.Generator().manual_seed(1))["mask"].sum(1)
    assert set(sizes.int().tolist()) == set(range(3, 10))


def test_simulation_is_reproducible_with_a_seed():
    model = GaussianLinearRegression()
    a = model.simulate(8, torch.Generator().manual_seed(5))
    b = model.simulate(8, torch.Generator().manual_seed(5))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_get_model_unknown_name():
    with pytest.raises(ValueError, match="unknown model 'nope'.*conjugate_gaussian"):
        get_model("nope")


def _padded_pair(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(3, 7, 2, generator=g)
    mask = torch.ones(3, 7)
    mask[0, 4:] = 0
    mask[2, 2:] = 0
    # the same data with 5 extra padded rows holding garbage
    x_pad = torch.cat([x, 100 * torch.randn(3, 5, 2, generator=g)], dim=1)
    mask_pad = torch.cat([mask, torch.zeros(3, 5)], dim=1)
    x_pad[:, :7][mask == 0] = -50.0
    return x, mask, x_pad, mask_pad


@pytest.mark.parametrize(
    "net",
    [DeepSet(2, 4, hidden=8), SetTransformer(2, 4, dim=8, heads=2, inducing=3), RecurrentSummary(2, 4, hidden=8),
     TemporalConv(2, 4, hidden=8)],
    ids=["deepset", "set_transformer", "recurrent", "conv"],
)
def test_padding_is_invisible_to_every_summary_network(net):
    x, mask, x_pad, mask_pad = _padded_pair()
    net.eval()
    with torch.no_grad():
        a = net(x * mask[..., None], mask)
        b = net(x_pad, mask_pad)
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(
    "net", [DeepSet(2, 4, hidden=8), SetTransformer(2, 4, dim=8, heads=2, inducing=3)], ids=["deepset", "st"]
)
def test_set_networks_are_permutation_invariant(net):
    x = torch.randn(2, 6, 2)
    mask = torch.ones(2, 6)
    perm = torch.randperm(6)
    net.eval()
    with torch.no_grad():
        torch.testing.assert_close(net(x, mask), net(x[:, perm], mask), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("net", [RecurrentSummary(1, 4, hidden=8), TemporalConv(1, 4, hidden=8)], ids=["gru", "conv"])
def test_time_series_summaries_read_the_order_of_the_steps(net):
    x = torch.randn(2, 9, 1, generator=torch.Generator().manual_seed(3))
    mask = torch.ones(2, 9)
    net.eval()
    with torch.no_grad():
        assert not torch.allclose(net(x, mask), net(x.flip(1), mask), atol=1e-4)


def test_summary_networks_accept_extra_leading_dimensions():
    net = DeepSet(2, 4, hidden=8)
    x = torch.randn(3, 5, 6, 2)
    out = net(x, torch.ones(3, 5, 6))
    assert out.shape == (3, 5, 4)
    torch.testing.assert_close(out[1], net(x[1], torch.ones(5, 6)))


def test_masked_standardization_ignores_padding():
    x, mask, x_pad, mask_pad = _padded_pair()
    s1, s2 = Standardizer(2), Standardizer(2)
    s1.fit(x[mask > 0])
    s2.fit(x_pad, mask_pad)
    torch.testing.assert_close(s1.mean, s2.mean)
    torch.testing.assert_close(s1.std, s2.std)


def test_pad_datasets_and_prepare_ragged_lists():
    info = ConjugateGaussian().info
    data = [np.ones((3, 2)), np.zeros((5, 2)), pd.DataFrame({"y1": [1.0], "y2": [2.0]})]
    x, mask, single = prepare_observed(data, info, warn_outside=False)
    assert not single and x.shape == (3, 5, 2)
    assert mask.sum(1).tolist() == [3.0, 5.0, 1.0]
    assert x[2, 0].tolist() == [1.0, 2.0]
    xs, ms = pad_datasets([np.ones((2, 1)), np.ones((4, 1))])
    assert xs.shape == (2, 4, 1) and ms.sum() == 6


@pytest.mark.parametrize(
    "data, message",
    [
        (np.array([[0.0, np.nan], [1.0, 2.0]]), "contains NaN"),
        (np.array([[0.0, np.inf], [1.0, 2.0]]), "contains Inf"),
        (np.zeros((4, 3)), "wrong number of features.*2 observed columns"),
        (np.zeros((0, 2)), "empty"),
        ([np.zeros((2, 2)), np.zeros((0, 2))], "data set 1 is empty"),
        (pd.DataFrame({"y1": [1.0], "z": [2.0]}), r"missing column\(s\) \['y2'\]"),
        (np.zeros(5), "1-D array"),
        ("abc", "numeric"),
    ],
)
def test_bad_observed_data_names_the_problem(data, message):
    with pytest.raises((ValueError, TypeError), match=message):
        prepare_observed(data, ConjugateGaussian().info)


def test_data_set_size_outside_training_range_warns():
    with pytest.warns(UserWarning, match=r"outside the trained range N in \[2, 40\]"):
        prepare_observed(np.zeros((100, 2)), ConjugateGaussian(n_obs=(2, 40)).info)


def test_set_statistics_match_least_squares_and_ignore_padding():
    """DeepSet.statistics: log SDs, correlation, residual SDs, slopes and intercepts as numpy's least squares gives them."""
    gen = torch.Generator().manual_seed(3)
    x = torch.rand(12, generator=gen) * 3
    y = 0.5 - 1.5 * x + 0.3 * torch.randn(12, generator=gen)
    rows = torch.stack([x, y], -1)
    net = DeepSet(2, 4, hidden=8)
    assert net.n_statistics == 2 + 9 + 1
    padded = torch.cat([rows, torch.full((5, 2), 50.0)])
    mask = torch.cat([torch.ones(12), torch.zeros(5)])
    stats = net.statistics(padded[None], mask[None])[0].double()
    torch.testing.assert_close(stats, net.statistics(rows[None], torch.ones(1, 12))[0].double(), atol=1e-5, rtol=1e-5)
    xs, ys = x.double().numpy(), y.double().numpy()
    slope, intercept = np.polyfit(xs, ys, 1)
    resid_sd = np.sqrt(np.mean((ys - intercept - slope * xs) ** 2))  # ML (1/N) residual SD
    expect = [xs.mean(), ys.mean(), np.log(xs.std()), np.log(ys.std()), np.corrcoef(xs, ys)[0, 1]]
    np.testing.assert_allclose(stats[:5].numpy(), expect, atol=2e-3)
    np.testing.assert_allclose(stats[6].numpy(), np.log(resid_sd), atol=6e-3)  # log SD of y given x (ridge)
    # slopes and intercepts are soft-bounded beyond +-4 only (soft_bound), so these two are exact
    np.testing.assert_allclose(stats[8].numpy(), slope, atol=2e-3)
    np.testing.assert_allclose(stats[10].numpy(), intercept, atol=2e-3)
    np.testing.assert_allclose(stats[11].numpy(), np.log(12))
    # a set of one row stays finite (ridge), and sets without scale-free statistics refuse
    assert torch.isfinite(net.statistics(rows[None, :1], torch.ones(1, 1))).all()
    # a second-level DeepSet can pool exact second moments of its last inputs; padding stays invisible
    pool = DeepSet(5, 4, hidden=8, interactions=False, second_moments_of_last=3)
    torch.testing.assert_close(pool(torch.cat([padded, padded, padded[:, :1]], -1)[None], mask[None]),
                               pool(torch.cat([rows, rows, rows[:, :1]], -1)[None], torch.ones(1, 12)))
    with pytest.raises(ValueError, match="second_moments_of_last"):
        DeepSet(2, 4, second_moments_of_last=2)
    with pytest.raises(ValueError, match="scale_free"):
        DeepSet(2, 4, hidden=8, scale_free=False).statistics(rows[None], torch.ones(1, 12))


def test_set_extremes_are_exact_minima_and_maxima_and_ignore_padding():
    x, mask, x_pad, mask_pad = _padded_pair()
    net = DeepSet(2, 4, hidden=8, extremes=True).eval()
    plain = DeepSet(2, 4, hidden=8)
    assert net.n_statistics == plain.n_statistics + 4
    with torch.no_grad():
        stats = net.statistics(x_pad, mask_pad)
        torch.testing.assert_close(stats, net.statistics(x * mask[..., None], mask), atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(net(x_pad, mask_pad), net(x * mask[..., None], mask), atol=1e-5, rtol=1e-5)
    for b in range(3):
        rows = x[b][mask[b] > 0]
        torch.testing.assert_close(stats[b, -5:-3], rows.amin(0))  # minima, maxima, then log N
        torch.testing.assert_close(stats[b, -3:-1], rows.amax(0))
    # the statistics before them are unchanged, so pooled statistics read the same positions
    torch.testing.assert_close(stats[:, :-5], plain.statistics(x_pad, mask_pad)[:, :-1])
    with pytest.raises(ValueError, match="extremes"):
        DeepSet(2, 4, scale_free=False, extremes=True)


def test_pooled_statistics_are_sums_of_squares_over_degrees_of_freedom():
    """DeepSet.pooled_statistics: the pooled within-group residual SD of a regression, as numpy computes it.

    Groups with very different spreads: the pooled SD (what a Gaussian likelihood uses)
    differs clearly from the geometric mean of the groups' SDs, and padded groups and rows
    change nothing.
    """
    gen = torch.Generator().manual_seed(4)
    sizes, noise = [6, 12, 9], [0.1, 1.0, 0.4]
    j, n_max = 4, 15  # one padded group, padded rows
    x = torch.zeros(j, n_max, 2)
    mask = torch.zeros(j, n_max)
    rss = sd_ss = 0.0
    for g, (n, s) in enumerate(zip(sizes, noise)):
        xs = torch.rand(n, generator=gen) * 2
        ys = 1.0 + (g - 1.0) * xs + s * torch.randn(n, generator=gen)
        x[g, :n] = torch.stack([xs, ys], -1)
        x[g, n:] = 40.0
        mask[g, :n] = 1
        a, b = xs.double().numpy(), ys.double().numpy()
        slope, intercept = np.polyfit(a, b, 1)
        rss += np.sum((b - intercept - slope * a) ** 2)
        sd_ss += np.sum((a - a.mean()) ** 2)
    x[3] = 7.0
    mask[3, 0] = 1  # a padded group keeps one dummy row (as MultilevelAmortizer.embed does)
    group_mask = torch.tensor([1.0, 1.0, 1.0, 0.0])
    net = DeepSet(2, 4, hidden=8)
    assert net.n_pooled_statistics == 4
    stats = net.statistics(x, mask)
    pooled = net.pooled_statistics(stats, group_mask).double()
    n_total = sum(sizes)
    np.testing.assert_allclose(pooled[0].numpy(), 0.5 * np.log(sd_ss / (n_total - 3)), atol=1e-3)  # x: d = 1
    np.testing.assert_allclose(pooled[3].numpy(), 0.5 * np.log(rss / (n_total - 2 * 3)), atol=3e-3)  # y | x: d = F = 2
    geometric = stats[:3, 6].mean().item()
    assert pooled[3].item() - geometric > 0.3  # the pooled SD is not the average log SD
    # padded groups (any content) are invisible; so is a batch dimension
    x2 = x.clone()
    x2[3] = -3.0
    both = net.pooled_statistics(net.statistics(torch.stack([x, x2]), mask.expand(2, -1, -1)), group_mask.expand(2, -1))
    torch.testing.assert_close(both[0], both[1])
    torch.testing.assert_close(both[0].double(), pooled)
