"""Formula terms: design matrices with brms' names, checked against matrices written out by hand as R builds them."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("formulae")

from amortbayes.formula import parse_terms  # noqa: E402


@pytest.fixture
def df():
    return pd.DataFrame({
        "y": [1.0, 2.0, 3.0, 4.0, 5.0, 6.0],
        "x": [1.0, 2.0, 3.0, 4.0, 5.0, 6.0],
        "z": [0.5, -1.0, 2.0, 0.0, 1.5, -0.5],
        "f": ["a", "b", "c", "a", "b", "c"],
        "g": ["s2", "s2", "s1", "s1", "s3", "s3"],
    })


def test_treatment_coded_factor_and_interaction_as_model_matrix(df):
    t = parse_terms("y ~ x * f", df)
    # model.matrix(~ x * f): (Intercept), x, fb, fc, x:fb, x:fc
    fb = (df.f == "b").astype(float).to_numpy()
    fc = (df.f == "c").astype(float).to_numpy()
    expected = np.column_stack([np.ones(6), df.x, fb, fc, df.x * fb, df.x * fc])
    np.testing.assert_allclose(t.X, expected)
    assert t.fixed_names == ("Intercept", "x", "fb", "fc", "x:fb", "x:fc")
    assert t.group is None and t.Z.shape == (6, 0)
    np.testing.assert_allclose(t.y, df.y)


def test_no_intercept_and_transforms_follow_r(df):
    t = parse_terms("y ~ 0 + x + log(x) + scale(z) + I(x^2)", df)
    z = df.z.to_numpy()
    expected = np.column_stack([df.x, np.log(df.x), (z - z.mean()) / z.std(ddof=1), df.x**2])
    np.testing.assert_allclose(t.X, expected)
    assert t.fixed_names == ("x", "logx", "scalez", "IxE2")
    assert parse_terms("y ~ x - 1", df).fixed_names == ("x",)


def test_correlated_group_term_gives_design_grouping_and_one_block(df):
    t = parse_terms("y ~ x + (1 + x | g)", df)
    assert t.group == "g" and t.levels == ("s1", "s2", "s3")
    np.testing.assert_array_equal(t.group_index, [1, 1, 0, 0, 2, 2])
    np.testing.assert_allclose(t.Z, np.column_stack([np.ones(6), df.x]))
    assert t.group_names == ("Intercept", "x") and t.blocks == ((0, 1),) and t.correlated
    assert parse_terms("y ~ x + (x | g)", df).blocks == ((0, 1),)


def test_double_bar_and_separate_terms_are_uncorrelated(df):
    t = parse_terms("y ~ x + (x || g)", df)
    assert t.group_names == ("Intercept", "x") and t.blocks == ((0,), (1,)) and not t.correlated
    np.testing.assert_allclose(t.Z, np.column_stack([np.ones(6), df.x]))
    t2 = parse_terms("y ~ x + (1 | g) + (0 + z | g)", df)
    assert t2.group_names == ("Intercept", "z") and t2.blocks == ((0,), (1,))
    np.testing.assert_allclose(t2.Z[:, 1], df.z)


def test_factor_inside_a_group_term(df):
    t = parse_terms("y ~ 1 + (0 + f | g)", df)
    assert t.group_names == ("fa", "fb", "fc")
    np.testing.assert_allclose(t.Z, pd.get_dummies(df.f).to_numpy(dtype=float))


@pytest.mark.parametrize("formula, message", [
    ("y ~ x + (1 | g) + (1 | f)", r"crossed group terms of \['f', 'g'\] are not supported yet"),
    ("y ~ x + (1 | g/f)", r"nested group terms such as \(1 \| a/b\) are not supported yet"),
    ("y ~ x + w", r"uses \['w'\], not column\(s\) of the data"),
    ("y x", "a formula reads 'response ~ terms'"),
])
def test_unsupported_or_wrong_formulas_name_the_problem(df, formula, message):
    with pytest.raises(ValueError, match=message):
        parse_terms(formula, df)


def test_a_grouping_factor_with_one_level_is_refused(df):
    with pytest.raises(ValueError, match="grouping factor 'g' has 1 level"):
        parse_terms("y ~ x + (1 | g)", df.assign(g="only"))


def test_rows_with_missing_values_are_dropped_with_their_count(df):
    df.loc[[0, 3], "x"] = np.nan
    df.loc[5, "f"] = None  # f is not used by the formula: this row stays
    with pytest.warns(UserWarning, match="excluded from the model: 2 of 6"):
        t = parse_terms("y ~ x + (1 | g)", df)
    assert t.X.shape == (4, 2) and t.dropped_rows == 2
    np.testing.assert_array_equal(t.group_index, [1, 0, 2, 2])


def test_binomial_responses_read_trials_as_brms_and_cbind_as_r(df):
    d = df.assign(s=[0, 1, 2, 3, 1, 0], n=[3, 4, 5, 6, 2, 1], fail=[3, 3, 3, 3, 1, 1])
    t = parse_terms("s | trials(n) ~ x + (1 | g)", d)
    np.testing.assert_array_equal(t.y, d.s)
    np.testing.assert_array_equal(t.trials, d.n)
    assert t.response == "s" and t.fixed_names == ("Intercept", "x")
    t = parse_terms("cbind(s, fail) ~ x + (1 | g)", d)
    np.testing.assert_array_equal(t.y, d.s)
    np.testing.assert_array_equal(t.trials, d.s + d.fail)
    np.testing.assert_array_equal(parse_terms("s | trials(10) ~ x + (1 | g)", d).trials, np.full(6, 10.0))
    assert parse_terms("y ~ x + (1 | g)", d).trials is None
    with pytest.raises(ValueError, match="other addition terms"):
        parse_terms("y | weights(x) ~ x + (1 | g)", d)
    with pytest.raises(ValueError, match=r"uses \['nn'\]"):
        parse_terms("s | trials(nn) ~ x + (1 | g)", d)


def test_new_data_go_through_the_fitted_levels_and_scale(df):
    from amortbayes.formula.terms import new_terms

    t = parse_terms("y ~ scale(x) + f + (1 + z | g)", df)
    new = new_terms(t, df[df.f == "c"].iloc[:1])  # one row, one level of f, one group
    # f's treatment columns stay (fb, fc); scale() uses the fitted mean 3.5 and SD sd(1..6)
    assert new.X.shape == (1, 4)
    np.testing.assert_allclose(new.X[0], [1.0, (3.0 - 3.5) / np.std(np.arange(1, 7), ddof=1), 0.0, 1.0])
    np.testing.assert_allclose(new.Z, [[1.0, 2.0]])
    assert new.levels == ("s1",) and new.fixed_names == t.fixed_names
    with pytest.raises(ValueError, match=r"levels \(d\) in 'f' are not present"):
        new_terms(t, df.assign(f="d"))


def test_each_group_term_is_its_own_model_matrix_as_lme4_builds_it(df):
    # (0 + f | g) next to (1 | g): its own model.matrix(~ 0 + f), fa fb fc (not reduced by the other term's intercept)
    t = parse_terms("y ~ x + (1 | g) + (0 + f | g)", df)
    assert t.group_names == ("Intercept", "fa", "fb", "fc") and t.blocks == ((0,), (1, 2, 3))
    np.testing.assert_allclose(t.Z, np.column_stack([np.ones(6), pd.get_dummies(df.f).to_numpy(dtype=float)]))
    # (1 + x:f | g): model.matrix(~ 1 + x:f) has x:fa x:fb x:fc
    assert parse_terms("y ~ x + (1 + x:f | g)", df).group_names == ("Intercept", "x:fa", "x:fb", "x:fc")
    assert parse_terms("y ~ x + (x - 1 | g)", df).group_names == ("x",)
    # a || term next to a | term of the same factor leaves the | term's block correlated
    assert parse_terms("y ~ x + (1 + x | g) + (0 + z || g)", df).blocks == ((0, 1), (2,))


def test_transforms_inside_group_terms_are_group_terms(df):
    t = parse_terms("y ~ x + (1 + log(x) | g)", df)  # was read as no group term at all
    assert t.group == "g" and t.group_names == ("Intercept", "logx") and t.blocks == ((0, 1),)
    np.testing.assert_allclose(t.Z, np.column_stack([np.ones(6), np.log(df.x)]))
    t = parse_terms("y ~ x + (scale(x) || g)", df)
    assert t.group_names == ("Intercept", "scalex") and t.blocks == ((0,), (1,))
    np.testing.assert_allclose(t.Z[:, 1], (df.x - 3.5) / np.std(np.arange(1, 7), ddof=1))
    assert parse_terms("y ~ I(x^2) + (1 + I(x^2) | g)", df).group_names == ("Intercept", "IxE2")


def test_new_data_scale_group_terms_by_the_fitted_statistics(df):
    from amortbayes.formula.terms import new_terms

    t = parse_terms("y ~ x + (1 + scale(x) | g)", df)
    new = new_terms(t, df.iloc[[2]])
    np.testing.assert_allclose(new.Z, [[1.0, (3.0 - 3.5) / np.std(np.arange(1, 7), ddof=1)]])
