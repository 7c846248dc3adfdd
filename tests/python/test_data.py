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
    "exam": (
        (4059, 10),
        ["school", "student", "normexam", "standLRT", "sex", "schgend", "type", "vr",
         "intake", "schavg"],
        "school",
        65,
    ),
    "contraception": (
        (1934, 6),
        ["district", "woman", "use", "livch", "age", "urban"],
        "district",
        60,
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


def test_exam_facts():
    df = abd.load_exam()
    for col in ("normexam", "standLRT", "schavg"):
        assert df[col].dtype == np.float64, col
    assert list(df["school"].cat.categories) == [str(i) for i in range(1, 66)]
    assert df["school"].cat.codes.is_monotonic_increasing  # rows grouped by school
    sizes = df.groupby("school", observed=True).size()
    assert sizes.min() == 2 and sizes.max() == 198
    assert (sizes.idxmin(), sizes.idxmax()) == ("48", "14")
    # student is an id within school: 650 labels, 4 (school, student) pairs occur twice
    assert df["student"].map(type).eq(str).all()
    assert df["student"].nunique() == 650
    assert df.duplicated(["school", "student"]).sum() == 4
    for col, levels in (("sex", ["F", "M"]), ("schgend", ["mixed", "boys", "girls"]),
                        ("type", ["Mxd", "Sngl"]), ("vr", ["bottom 25%", "mid 50%", "top 25%"]),
                        ("intake", ["bottom 25%", "mid 50%", "top 25%"])):
        assert list(df[col].cat.categories) == levels, col
    # counts computed in R: table(Exam$sex), table(Exam$schgend), ...
    assert list(df["sex"].value_counts(sort=False)) == [2436, 1623]
    assert list(df["schgend"].value_counts(sort=False)) == [2169, 513, 1377]
    assert list(df["type"].value_counts(sort=False)) == [2169, 1890]
    assert list(df["vr"].value_counts(sort=False)) == [640, 2263, 1156]
    assert list(df["intake"].value_counts(sort=False)) == [1176, 2344, 539]
    # type is "Sngl" exactly in the boys' and girls' schools
    np.testing.assert_array_equal(df["type"] == "Sngl", df["schgend"] != "mixed")
    # school-level columns: constant within school; schavg is the school mean of standLRT
    by_school = df.groupby("school", observed=True)
    assert (by_school[["schgend", "type", "vr", "schavg"]].nunique() == 1).all().all()
    np.testing.assert_allclose(by_school["schavg"].first(), by_school["standLRT"].mean(), atol=1e-6)
    # mlmRev's intake labels run against standLRT ("bottom 25%" has the highest mean)
    assert list(df.groupby("intake", observed=True)["standLRT"].mean().round(4)) == [0.9173, -0.1513, -1.3298]
    assert df["normexam"].mean() == pytest.approx(-0.0001138054, abs=1e-9)
    assert df["standLRT"].mean() == pytest.approx(0.0018103538, abs=1e-9)
    first = df.iloc[0]
    assert (first["school"], first["student"], first["vr"], first["intake"]) == ("1", "143", "mid 50%", "bottom 25%")
    assert first["normexam"] == pytest.approx(0.2613242, abs=1e-12)
    assert first["standLRT"] == pytest.approx(0.6190592, abs=1e-12)


def test_contraception_facts():
    df = abd.load_contraception()
    assert df["use"].dtype == np.int64 and df["urban"].dtype == np.int64
    assert df["age"].dtype == np.float64
    assert set(df["use"]) == {0, 1} and set(df["urban"]) == {0, 1}
    # 60 districts labelled 1..61: mlmRev has no district 54
    assert list(df["district"].cat.categories) == [str(i) for i in range(1, 62) if i != 54]
    assert df["district"].cat.codes.is_monotonic_increasing  # rows grouped by district
    assert list(df["woman"]) == [str(i) for i in range(1, 1935)]
    assert list(df["livch"].cat.categories) == ["0", "1", "2", "3+"]
    sizes = df.groupby("district", observed=True).size()
    assert sizes.min() == 2 and sizes.max() == 118
    assert (sizes.idxmin(), sizes.idxmax()) == ("3", "14")
    # counts computed in R: table(use), table(urban), table(livch), table(livch, use), table(use, urban)
    assert df["use"].sum() == 759 and df["urban"].sum() == 562
    assert list(df["livch"].value_counts(sort=False)) == [530, 356, 305, 743]
    assert list(df.groupby("livch", observed=True)["use"].sum()) == [133, 164, 147, 315]
    assert list(df.groupby("urban")["use"].sum()) == [469, 290]
    # urban varies within 42 districts; 15 are all rural, 3 all urban
    urban = df.groupby("district", observed=True)["urban"].agg(["min", "max"])
    assert ((urban["min"] == 0) & (urban["max"] == 1)).sum() == 42
    assert (urban["max"] == 0).sum() == 15 and (urban["min"] == 1).sum() == 3
    # age: mlmRev's centred age, 50 distinct values
    assert df["age"].min() == pytest.approx(-13.56) and df["age"].max() == pytest.approx(19.44)
    assert df["age"].mean() == pytest.approx(0.00219788, abs=1e-8)
    assert df["age"].nunique() == 50
    first = df.iloc[0]
    assert (first["district"], first["woman"], first["use"], first["livch"], first["urban"]) == ("1", "1", 0, "3+", 1)
    assert first["age"] == pytest.approx(18.44, abs=1e-12)


def test_provenance_sha256_matches_shipped_csvs():
    root = files("amortbayes.data")
    text = root.joinpath("PROVENANCE.md").read_text(encoding="utf-8")
    sections = {m.group(1): m.group(2)
                for m in re.finditer(r"^## `(\w+)\.csv`\n(.*?)(?=^## |\Z)", text, flags=re.S | re.M)}
    assert sorted(sections) == sorted(EXPECTED)
    for name, section in sections.items():
        digest = hashlib.sha256(root.joinpath(f"{name}.csv").read_bytes()).hexdigest()
        assert re.search(rf"sha256:\**\s*`{digest}`", section), name
