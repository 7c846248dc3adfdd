"""The R package's Python entry points: plain values out whatever reticulate's version converts."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("formulae")

from amortbayes.data import load_sleepstudy  # noqa: E402
from amortbayes.formula import rbridge  # noqa: E402


def test_plain_turns_frames_arrays_and_scalars_into_lists_and_dicts():
    frame = pd.DataFrame({"a": [1.0, 2.5], "b": ["x", "y"], "c": [True, False]})
    out = rbridge._plain({"t": frame, "m": np.arange(6.0).reshape(2, 3), "v": np.array([1, 2]), "s": np.float32(1.5)})
    assert out["t"] == {"__frame__": ["a", "b", "c"], "columns": {"a": [1.0, 2.5], "b": ["x", "y"], "c": [True, False]}}
    assert out["m"] == {"__array__": [2, 3], "values": [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]}  # C order
    assert out["v"] == [1.0, 2.0] and out["s"] == 1.5 and isinstance(out["s"], float)


def test_priors_from_r_records_and_warnings_passed_on():
    records = [{"prior": "normal(0, 5)", "class": "b", "coef": "Days", "group": ""}, {"prior": "", "class": "sd"}]
    (p,) = rbridge.priors(records)
    assert (p.class_, p.coef, p.stan()) == ("b", "Days", "normal(0, 5)")
    data = load_sleepstudy()
    data.loc[[2, 40], "Reaction"] = np.nan
    table, warned = rbridge.prior_table("Reaction ~ Days + (1 | Subject)", data, "gaussian", records)
    cols = table["columns"]
    row = [i for i, (c, k) in enumerate(zip(cols["class"], cols["coef"])) if (c, k) == ("b", "Days")]
    assert [cols["prior"][i] for i in row] == ["normal(0, 5)"] and cols["source"][row[0]] == "user"
    assert warned == ["Rows containing NAs were excluded from the model: 2 of 180"]
