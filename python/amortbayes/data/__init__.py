"""Shipped real data sets (CSV + provenance) and their loaders."""

from __future__ import annotations

from importlib.resources import files
from typing import Callable

import pandas as pd

__all__ = [
    "list_datasets",
    "load_dataset",
    "load_sleepstudy",
    "load_speed_acc",
    "load_radon",
    "load_chickweight",
    "load_cbpp",
    "load_epilepsy",
    "load_exam",
    "load_contraception",
]

# Group columns are returned as pandas ``category`` dtype whose categories are
# *strings* (e.g. Subject "308", Chick "1"); the category order is given below
# (numeric order for numeric labels, the R factor order otherwise), so
# ``df[col].cat.codes`` gives stable 0-based group indices.


def _numeric_label_dtype(values: pd.Series) -> pd.CategoricalDtype:
    labels = sorted({int(v) for v in values})
    return pd.CategoricalDtype([str(v) for v in labels], ordered=False)


def _read_csv(filename: str, str_cols: tuple[str, ...] = ()) -> pd.DataFrame:
    resource = files(__name__).joinpath(filename)
    with resource.open("r", encoding="utf-8") as fh:
        return pd.read_csv(fh, dtype={c: str for c in str_cols}, keep_default_na=False,
                           na_values=[])


def load_sleepstudy() -> pd.DataFrame:
    """Reaction times in a sleep-deprivation study (lme4 ``sleepstudy``).

    Source: R package lme4 (Debian ``r-cran-lme4`` 1.1-31-1), data from
    Belenky et al. (2003), J. Sleep Research 12, 1-12. See ``PROVENANCE.md``.

    Shape ``(180, 3)``: 18 subjects x 10 days (0-9), no missing values.

    Columns:
        Reaction (float64): average reaction time in ms.
        Days (int64): days of sleep deprivation, 0..9.
        Subject (category of str): subject id, 18 levels "308".."372"
            (numeric order, as in lme4).
    """
    df = _read_csv("sleepstudy.csv", str_cols=("Subject",))
    df["Days"] = df["Days"].astype("int64")
    df["Subject"] = df["Subject"].astype(_numeric_label_dtype(df["Subject"]))
    return df


_SPEED_ACC_FREQ = ["high", "low", "very_low", "nw_high", "nw_low", "nw_very_low"]


def load_speed_acc(drop_censored: bool = False) -> pd.DataFrame:
    """Lexical decisions, accuracy condition, trial block 4 (rtdists ``speed_acc``).

    Source: R package rtdists (Debian ``r-cran-rtdists`` 0.11-5-1), data of
    Wagenmakers, Ratcliff, Gomez & McKoon (2008), J. Memory and Language 58,
    140-159, Experiment 1 (17 participants, as in Heathcote & Love, 2012).
    Subset as in Habermann et al. (2024), Amortized Bayesian Multilevel
    Models, Sec. 3.2: "observations in the accuracy condition in trial
    block 4", all participants. See ``PROVENANCE.md``.

    Shape ``(1632, 12)``: 17 participants x 96 trials, no missing values.
    With ``drop_censored=True`` the 6 trials flagged by rtdists' ``censor``
    (all six have rt > 3 s) are removed, giving ``(1626, 12)``; the paper
    states no such exclusion, so the default keeps them.

    Columns:
        id (category of str): participant, 17 levels "1".."17".
        trial (int64): 1..96, row position within the participant's block-4
            trials in the rtdists row order.
        block (int64): always 4.
        condition (category of str): always "accuracy".
        stim (str): stimulus identifier (rtdists ``stim``).
        stim_cat (category of str): "word" / "nonword" (816 each).
        frequency (category of str): "high", "low", "very_low", "nw_high",
            "nw_low", "nw_very_low" (272 each).
        response (category of str): "word" / "nonword" (no "error"
            responses occur in this subset).
        rt (float64): response time in seconds (0.323 .. 6.24).
        censor (bool): rtdists flag: uninterpretable response, rt < 0.18 s
            or rt > 3 s.
        correct (int64): 1 if ``response == stim_cat`` else 0 (accuracy
            coding: upper boundary = correct response).
        response_upper (int64): 1 if ``response == "word"`` else 0
            (stimulus/response coding: upper boundary = "word").
    """
    df = _read_csv("speed_acc.csv", str_cols=("id", "stim"))
    for col in ("trial", "block", "correct", "response_upper"):
        df[col] = df[col].astype("int64")
    df["censor"] = df["censor"].astype(bool)
    df["id"] = df["id"].astype(_numeric_label_dtype(df["id"]))
    df["condition"] = df["condition"].astype(pd.CategoricalDtype(["accuracy", "speed"]))
    df["stim_cat"] = df["stim_cat"].astype(pd.CategoricalDtype(["word", "nonword"]))
    df["response"] = df["response"].astype(pd.CategoricalDtype(["word", "nonword"]))
    df["frequency"] = df["frequency"].astype(pd.CategoricalDtype(_SPEED_ACC_FREQ))
    if drop_censored:
        df = df.loc[~df["censor"]].reset_index(drop=True)
    return df


def load_radon() -> pd.DataFrame:
    """Minnesota household radon measurements (rstanarm ``radon``).

    Source: R package rstanarm (Debian ``r-cran-rstanarm`` 2.21.3-2), data
    from Gelman & Hill (2007), Data Analysis Using Regression and
    Multilevel/Hierarchical Models, CUP. See ``PROVENANCE.md``.

    Shape ``(919, 4)``: 919 houses in 85 counties (1 to 116 houses per
    county), no missing values.

    Columns:
        log_radon (float64): radon measurement (log scale).
        floor (int64): 0 = measured in the basement, 1 = first floor.
        county (category of str): county name, 85 levels in alphabetical
            order (as the R factor).
        log_uranium (float64): county-level uranium (log scale).
    """
    df = _read_csv("radon.csv", str_cols=("county",))
    df["floor"] = df["floor"].astype("int64")
    df["county"] = df["county"].astype(pd.CategoricalDtype(sorted(df["county"].unique())))
    return df


def load_chickweight() -> pd.DataFrame:
    """Weight versus age of chicks on four diets (base R ``ChickWeight``).

    Source: R package datasets (Debian ``r-base-core`` 4.2.2.20221110-2),
    data from Crowder & Hand (1990), Analysis of Repeated Measures, example
    5.3. See ``PROVENANCE.md``.

    Shape ``(578, 4)``: 50 chicks, measured on days 0, 2, ..., 20, 21
    (45 chicks have all 12 measurements, 5 have 2-11), no missing values.
    Rows are sorted by chick, then time, so each chick is a time series.

    Columns:
        weight (float64): body weight in grams.
        Time (int64): days since birth.
        Chick (category of str): chick id, 50 levels "1".."50" (numeric
            order; R's ChickWeight orders levels by final weight instead).
        Diet (category of str): diet "1".."4" (20, 10, 10, 10 chicks).
    """
    df = _read_csv("chickweight.csv", str_cols=("Chick", "Diet"))
    df["weight"] = df["weight"].astype("float64")
    df["Time"] = df["Time"].astype("int64")
    df["Chick"] = df["Chick"].astype(_numeric_label_dtype(df["Chick"]))
    df["Diet"] = df["Diet"].astype(_numeric_label_dtype(df["Diet"]))
    return df


def load_cbpp() -> pd.DataFrame:
    """Contagious bovine pleuropneumonia in Ethiopian zebu herds (lme4 ``cbpp``).

    Source: R package lme4 (Debian ``r-cran-lme4`` 1.1-31-1), data from
    Lesnoff et al. (2004), Preventive Veterinary Medicine 64, 27-40. See
    ``PROVENANCE.md``. For binomial GLMMs such as
    ``incidence | trials(size) ~ period + (1 | herd)``.

    Shape ``(56, 4)``: 15 herds followed over up to 4 periods (13 herds
    have all 4, herd 2 has 3, herd 8 has 1), no missing values.

    Columns:
        herd (category of str): herd id, 15 levels "1".."15" (numeric order,
            as in lme4).
        incidence (int64): new serological cases in the herd and period
            (0..12; 99 in total).
        size (int64): herd size at the start of the period (2..34; 842 in
            total), the number of binomial trials.
        period (category of str): period "1".."4" (a factor, as in lme4).
    """
    df = _read_csv("cbpp.csv", str_cols=("herd", "period"))
    df["incidence"] = df["incidence"].astype("int64")
    df["size"] = df["size"].astype("int64")
    df["herd"] = df["herd"].astype(_numeric_label_dtype(df["herd"]))
    df["period"] = df["period"].astype(_numeric_label_dtype(df["period"]))
    return df


def load_epilepsy() -> pd.DataFrame:
    """Epileptic seizure counts in a progabide trial (brms ``epilepsy``).

    Source: R package brms (Debian ``r-cran-brms`` 2.18.0-1), data from
    Thall & Vail (1990), Biometrics 46, 657-671 (the progabide trial of
    Leppik et al., 1987). See ``PROVENANCE.md``. For Poisson or negative
    binomial GLMMs such as ``count ~ zAge + zBase * Trt + (1 | patient)``.

    Shape ``(236, 7)``: 59 patients x 4 visits, no missing values. Rows are
    in brms' order: visit 1 of patients 1..59, then visit 2, and so on.
    brms' ``Age`` and ``Base`` columns are not shipped (``zAge`` and
    ``zBase`` are their standardized versions).

    Columns:
        count (int64): seizures in the two weeks before the visit (0..102;
            1948 in total).
        Trt (int64): treatment indicator, 0 = placebo (28 patients),
            1 = progabide (31 patients); an integer, not a category, so a
            formula uses it as a 0/1 covariate (the same design as R's
            treatment coding of brms' factor).
        zAge (float64): standardized age (mean 0, SD 1 over the rows).
        zBase (float64): standardized seizure count in the 8-week baseline
            period (mean 0, SD 1 over the rows).
        visit (int64): visit number, 1..4.
        patient (category of str): patient id, 59 levels "1".."59" (numeric
            order, as in brms).
        obs (category of str): observation id, 236 levels "1".."236" (the
            row number), for an observation-level effect ``(1 | obs)``.
    """
    df = _read_csv("epilepsy.csv", str_cols=("patient", "obs"))
    for col in ("count", "Trt", "visit"):
        df[col] = df[col].astype("int64")
    for col in ("zAge", "zBase"):
        df[col] = df[col].astype("float64")
    df["patient"] = df["patient"].astype(_numeric_label_dtype(df["patient"]))
    df["obs"] = df["obs"].astype(_numeric_label_dtype(df["obs"]))
    return df


_EXAM_BANDS = ["bottom 25%", "mid 50%", "top 25%"]


def load_exam() -> pd.DataFrame:
    """Exam scores of pupils in inner-London schools (mlmRev ``Exam``).

    Source: R package mlmRev (Debian ``r-cran-mlmrev`` 1.0-8-2), data from
    Goldstein, Rasbash et al. (1993), Oxford Review of Education 19, 425-433.
    See ``PROVENANCE.md``. For a gaussian varying-intercept-and-slope model
    ``normexam ~ standLRT + (standLRT | school)`` on about 4,000 rows.

    Shape ``(4059, 10)``: 4059 pupils in 65 schools (2 to 198 pupils per
    school), no missing values. Rows are in mlmRev's order (grouped by
    school).

    Columns:
        school (category of str): school id, 65 levels "1".."65" (numeric
            order, as in mlmRev).
        student (str): pupil id *within* school ("1".."913"; not unique
            across schools, and 4 (school, student) pairs occur twice).
        normexam (float64): normalized exam score at age 16.
        standLRT (float64): standardized London Reading Test score at age 11.
        sex (category of str): "F" (2436) / "M" (1623).
        schgend (category of str): school gender "mixed", "boys", "girls"
            (mlmRev's level order).
        type (category of str): school type "Mxd" / "Sngl" (mixed / single
            sex).
        vr (category of str): mlmRev's verbal-reasoning band "bottom 25%",
            "mid 50%", "top 25%"; constant within school.
        intake (category of str): mlmRev's intake band "bottom 25%",
            "mid 50%", "top 25%" (labels kept as in mlmRev, although
            "bottom 25%" has the highest mean ``standLRT``; see
            ``PROVENANCE.md``).
        schavg (float64): school average of ``standLRT`` (constant within
            school).
    """
    df = _read_csv("exam.csv", str_cols=("school", "student", "sex", "schgend", "type", "vr", "intake"))
    for col in ("normexam", "standLRT", "schavg"):
        df[col] = df[col].astype("float64")
    df["school"] = df["school"].astype(_numeric_label_dtype(df["school"]))
    df["sex"] = df["sex"].astype(pd.CategoricalDtype(["F", "M"]))
    df["schgend"] = df["schgend"].astype(pd.CategoricalDtype(["mixed", "boys", "girls"]))
    df["type"] = df["type"].astype(pd.CategoricalDtype(["Mxd", "Sngl"]))
    for col in ("vr", "intake"):
        df[col] = df[col].astype(pd.CategoricalDtype(_EXAM_BANDS))
    return df


def load_contraception() -> pd.DataFrame:
    """Contraceptive use of women in Bangladesh (mlmRev ``Contraception``).

    Source: R package mlmRev (Debian ``r-cran-mlmrev`` 1.0-8-2), data from
    the Bangladesh Fertility Survey (1989; mlmRev's help page says 1988).
    See ``PROVENANCE.md``. For a bernoulli GLMM
    ``use ~ age + urban + (urban | district)`` on about 2,000 rows.

    Shape ``(1934, 6)``: 1934 women in 60 districts (2 to 118 women per
    district), no missing values. Rows are in mlmRev's order (woman
    1..1934, grouped by district).

    Columns:
        district (category of str): district id, 60 levels "1".."61"
            without "54" (numeric order, as in mlmRev).
        woman (category of str): woman id, 1934 levels "1".."1934" (the row
            number).
        use (int64): contraceptive use at the time of the survey, 1 = "Y"
            (759 women), 0 = "N" (1175); an integer, the 0/1 response.
        livch (category of str): number of living children "0", "1", "2",
            "3+".
        age (float64): age in years, centred as in mlmRev (-13.56 .. 19.44,
            mean 0.0022).
        urban (int64): 1 = urban ("Y", 562 women), 0 = rural ("N", 1372);
            an integer, so a formula uses it as a 0/1 covariate (the same
            design as R's treatment coding of mlmRev's factor).
    """
    df = _read_csv("contraception.csv", str_cols=("district", "woman", "livch"))
    for col in ("use", "urban"):
        df[col] = df[col].astype("int64")
    df["age"] = df["age"].astype("float64")
    df["district"] = df["district"].astype(_numeric_label_dtype(df["district"]))
    df["woman"] = df["woman"].astype(_numeric_label_dtype(df["woman"]))
    df["livch"] = df["livch"].astype(pd.CategoricalDtype(["0", "1", "2", "3+"]))
    return df


_LOADERS: dict[str, Callable[[], pd.DataFrame]] = {
    "cbpp": load_cbpp,
    "chickweight": load_chickweight,
    "contraception": load_contraception,
    "epilepsy": load_epilepsy,
    "exam": load_exam,
    "radon": load_radon,
    "sleepstudy": load_sleepstudy,
    "speed_acc": load_speed_acc,
}


def list_datasets() -> list[str]:
    """Names of the shipped data sets, sorted (valid arguments of ``load_dataset``)."""
    return sorted(_LOADERS)


def load_dataset(name: str) -> pd.DataFrame:
    """Load a shipped data set by name (see ``list_datasets()``) with default options.

    Raises:
        ValueError: for an unknown name; the message lists the known names.
    """
    try:
        loader = _LOADERS[name]
    except (KeyError, TypeError):
        raise ValueError(
            f"unknown data set {name!r}; known data sets: {', '.join(list_datasets())}"
        ) from None
    return loader()
