"""Tests for the shipped real data sets and their loaders (amortbayes.data)."""

import hashlib
import re
from importlib.resources import files

import numpy as np
import pandas as pd
import pytest

from amortbayes import data as abd

EXPECTED = {
    # name: (shape, columns, group column, number of groups)
    "sleepstudy": ((180, 3), ["Reaction", "Days", "Subject"], "Subject", 18),
    "speed_acc": (
        (1632, 12),
        ["id", "trial", "block", "condition", "stim", "stim_cat", "frequency",
         "response", "rt", "censor", "correct", "response_upper"],
        "id",
        17,
    ),
    "radon": ((919, 4), ["log_radon", "floor", "county", "log_uranium"], "county", 85),
    "chickweight": ((578, 4), ["weight", "Time", "Chick", "Diet"], "Chick", 50),
    "cbpp": ((56, 4), ["herd", "incidence", "size", "period"], "herd", 15),
    "epilepsy": (
        (236, 7),
        ["count", "Trt", "zAge", "zBase", "visit", "patient", "obs"],
        "patient",
        59,
    ),
}


def test_list_datasets():
    assert abd.list_datasets() == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_shape_columns_groups_no_nan(name):
    shape, columns, group, n_groups = EXPECTED[name]
    df = abd.load_dataset(name)
    assert isinstance(df, pd.DataFrame)
    assert df.shape == shape
    assert list(df.columns) == columns
    assert isinstance(df[group].dtype, pd.CategoricalDtype)
    assert all(isinstance(c, str) for c in df[group].cat.categories)
    assert df[group].nunique() == n_groups == len(df[group].cat.categories)
    assert not df.isna().any().any()


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_named_loader_matches_load_dataset(name):
    pd.testing.assert_frame_equal(getattr(abd, f"load_{name}")(), abd.load_dataset(name))


def test_unknown_name_lists_known_datasets():
    with pytest.raises(ValueError) as err:
        abd.load_dataset("no_such_data")
    msg = str(err.value)
    assert "no_such_data" in msg
    for name in EXPECTED:
        assert name in msg


def test_sleepstudy_facts():
    df = abd.load_sleepstudy()
    assert df["Reaction"].dtype == np.float64
    assert df["Days"].dtype == np.int64
    assert df["Reaction"].mean() == pytest.approx(298.5079, abs=1e-3)
    assert (df.groupby("Subject", observed=True).size() == 10).all()
    assert (df.groupby("Subject", observed=True)["Days"].apply(sorted)
            .map(lambda d: d == list(range(10)))).all()
    assert list(df["Subject"].cat.categories[:3]) == ["308", "309", "310"]
    first = df[df["Subject"] == "308"].sort_values("Days")["Reaction"].iloc[0]
    assert first == pytest.approx(249.56)


def test_speed_acc_subset_and_coding():
    df = abd.load_speed_acc()
    assert (df["block"] == 4).all()
    assert (df["condition"] == "accuracy").all()
    assert (df.groupby("id", observed=True).size() == 96).all()
    assert (df.groupby("id", observed=True)["trial"].apply(lambda t: list(t) == list(range(1, 97)))).all()
    assert set(df["response"]) == {"word", "nonword"}
    assert (df["stim_cat"].value_counts() == 816).all()
    np.testing.assert_array_equal(df["correct"], (df["response"].astype(str) == df["stim_cat"].astype(str)).astype(int))
    np.testing.assert_array_equal(df["response_upper"], (df["response"] == "word").astype(int))
    assert df["correct"].sum() == 1560
    assert df["response_upper"].sum() == 778
    assert df["rt"].between(0.3, 7.0).all()
    assert df["censor"].dtype == bool
    assert df["censor"].sum() == 6
    assert (df.loc[df["censor"], "rt"] > 3.0).all()
    kept = abd.load_speed_acc(drop_censored=True)
    assert kept.shape == (1626, 12)
    assert kept["rt"].max() <= 3.0
    assert kept["id"].nunique() == 17


def test_radon_facts():
    df = abd.load_radon()
    assert set(df["floor"]) == {0, 1}
    sizes = df.groupby("county", observed=True).size()
    assert sizes.min() == 1 and sizes.max() == 116
    # log_uranium is a county-level predictor: constant within county
    assert (df.groupby("county", observed=True)["log_uranium"].nunique() == 1).all()
    assert df["log_radon"].mean() == pytest.approx(1.2648, abs=1e-3)


def test_chickweight_facts():
    df = abd.load_chickweight()
    assert df["weight"].dtype == np.float64 and df["Time"].dtype == np.int64
    sizes = df.groupby("Chick", observed=True).size()
    assert (sizes == 12).sum() == 45
    # each chick is one time series, sorted by time, on a single diet
    assert df.groupby("Chick", observed=True)["Time"].apply(lambda t: t.is_monotonic_increasing).all()
    assert (df.groupby("Chick", observed=True)["Diet"].nunique() == 1).all()
    diets = df.groupby("Chick", observed=True)["Diet"].first().value_counts().sort_index()
    assert list(diets) == [20, 10, 10, 10]
    assert set(df["Time"]) == set(range(0, 21, 2)) | {21}


def test_cbpp_facts():
    df = abd.load_cbpp()
    assert df["incidence"].dtype == np.int64 and df["size"].dtype == np.int64
    assert isinstance(df["period"].dtype, pd.CategoricalDtype)
    assert list(df["period"].cat.categories) == ["1", "2", "3", "4"]
    assert list(df["herd"].cat.categories[:3]) == ["1", "2", "3"]
    assert (df["incidence"] <= df["size"]).all()
    # totals computed in R: sum(cbpp$incidence), sum(cbpp$size)
    assert df["incidence"].sum() == 99
    assert df["size"].sum() == 842
    assert df["size"].min() == 2 and df["size"].max() == 34
    assert list(df.groupby("period", observed=True).size()) == [15, 14, 14, 13]
    assert list(df.groupby("period", observed=True)["incidence"].sum()) == [61, 17, 14, 7]
    sizes = df.groupby("herd", observed=True).size()
    assert sizes["8"] == 1 and sizes["2"] == 3 and (sizes == 4).sum() == 13
    first = df.iloc[0]
    assert (first["herd"], first["incidence"], first["size"], first["period"]) == ("1", 2, 14, "1")


def test_epilepsy_facts():
    df = abd.load_epilepsy()
    for col in ("count", "Trt", "visit"):
        assert df[col].dtype == np.int64, col
    assert df["zAge"].dtype == np.float64 and df["zBase"].dtype == np.float64
    assert isinstance(df["obs"].dtype, pd.CategoricalDtype)
    assert list(df["obs"]) == [str(i) for i in range(1, 237)]
    assert (df.groupby("patient", observed=True).size() == 4).all()
    assert (df.groupby("patient", observed=True)["visit"].apply(sorted)
            .map(lambda v: v == [1, 2, 3, 4])).all()
    # Trt and zBase are patient-level: constant within patient
    assert (df.groupby("patient", observed=True)[["Trt", "zBase", "zAge"]].nunique() == 1).all().all()
    assert list(df.groupby("patient", observed=True)["Trt"].first().value_counts().sort_index()) == [28, 31]
    # totals computed in R: sum(epilepsy$count), tapply(count, Trt, sum), tapply(count, visit, sum)
    assert df["count"].sum() == 1948
    assert list(df.groupby("Trt")["count"].sum()) == [961, 987]
    assert list(df.groupby("visit")["count"].sum()) == [528, 493, 496, 431]
    assert df["count"].min() == 0 and (df["count"] == 0).sum() == 23
    top = df.loc[df["count"].idxmax()]
    assert (top["count"], top["patient"], top["visit"]) == (102, "49", 1)
    # zAge, zBase are R's scale() over the 236 rows
    for col in ("zAge", "zBase"):
        assert df[col].mean() == pytest.approx(0.0, abs=1e-12)
        assert df[col].std(ddof=1) == pytest.approx(1.0, abs=1e-12)
    assert df["zAge"].iloc[0] == pytest.approx(0.424995011807687, abs=1e-14)
    assert df["zBase"].iloc[0] == pytest.approx(-0.757172824717557, abs=1e-14)


def test_provenance_sha256_matches_shipped_csvs():
    root = files("amortbayes.data")
    text = root.joinpath("PROVENANCE.md").read_text(encoding="utf-8")
    sections = {m.group(1): m.group(2)
                for m in re.finditer(r"^## `(\w+)\.csv`\n(.*?)(?=^## |\Z)", text, flags=re.S | re.M)}
    assert sorted(sections) == sorted(EXPECTED)
    for name, section in sections.items():
        digest = hashlib.sha256(root.joinpath(f"{name}.csv").read_bytes()).hexdigest()
        assert re.search(rf"sha256:\**\s*`{digest}`", section), name
