#!/usr/bin/env bash
# R for the R package (R/, tests/testthat, vignettes) and the formula layer's cross-checks
# (tests/python/test_formula_r.py): R 4.2, lme4, brms, rstan, reticulate, testthat, posterior, loo,
# bayesplot, knitr, rmarkdown, rtdists (the full diffusion model's reference density,
# amortbayes.reference.rtdists) and pandoc from Debian's packages, the Boost headers where rstan
# looks for them, and rpy2 in the venv.
#
#   scripts/setup-r.sh [VENV]      (VENV defaults to .venv; run from the repository root)
#
# Idempotent: each step is skipped when its result is already there.  Where R cannot be
# installed (not root, or no apt-get) it prints one note and exits 0: the R tests then skip.
set -euo pipefail

VENV="${1:-.venv}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PACKAGES=(r-base-core r-base-dev r-cran-lme4 r-cran-brms r-cran-rstan r-cran-bh libboost-dev
          r-cran-reticulate r-cran-rstantools r-cran-testthat r-cran-posterior r-cran-loo r-cran-bayesplot
          r-cran-knitr r-cran-rmarkdown r-cran-rtdists pandoc)

note() { echo "setup-r: $*; the R cross-checks (tests/python/test_formula_r.py) will skip"; }

r_ready() { command -v Rscript >/dev/null 2>&1 && command -v pandoc >/dev/null 2>&1 && Rscript -e 'suppressMessages({for (p in c("lme4", "brms", "reticulate", "rstantools", "testthat", "posterior", "loo", "bayesplot", "knitr", "rmarkdown", "rtdists")) library(p, character.only = TRUE)})' >/dev/null 2>&1; }

# 1. R and its packages from Debian (CRAN is not reachable; Debian's r-cran-* packages are)
if ! r_ready; then
    if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
        note "R with lme4 and brms is not installed and cannot be (needs root and apt-get): apt-get install ${PACKAGES[*]}"
        exit 0
    fi
    export DEBIAN_FRONTEND=noninteractive
    if ! { apt-get update -q >/dev/null && apt-get install -y -q --no-install-recommends "${PACKAGES[@]}" >/dev/null; }; then
        note "apt-get install ${PACKAGES[*]} failed"
        exit 0
    fi
    r_ready || { note "R is installed but one of its packages does not load"; exit 0; }
fi

# 2. Debian's r-cran-bh is a virtual package without headers, and rstan stops with "Boost not
#    found" unless system.file("include", package = "BH") exists (rstan_options("boost_lib"));
#    rstan compiles with -I"<BH>/include" and #include <boost/...>: an include folder whose
#    boost links to libboost-dev's headers is what it needs.
BH="$(Rscript -e 'cat(system.file(package = "BH"))' 2>/dev/null || true)"
if [ -z "$BH" ]; then
    note "R package BH is missing (apt-get install r-cran-bh): brms cannot compile models"
elif [ ! -e "$BH/include/boost/version.hpp" ]; then
    if [ ! -e /usr/include/boost/version.hpp ]; then
        note "no Boost headers in /usr/include/boost (apt-get install libboost-dev): brms cannot compile models"
    elif [ -w "$BH" ] || [ -w "$BH/include" ]; then
        mkdir -p "$BH/include"
        ln -sfn /usr/include/boost "$BH/include/boost"
        echo "setup-r: linked $BH/include/boost -> /usr/include/boost (Boost headers for rstan)"
    else
        note "cannot write to $BH to link the Boost headers (run as root): brms cannot compile models"
    fi
fi

# 3. rpy2 in the venv: the project's r extra (rpy2 3.6 does not load with R 4.2)
if [ -x "$VENV/bin/python" ]; then
    if ! "$VENV/bin/python" -c 'import rpy2.robjects' >/dev/null 2>&1; then
        "$VENV/bin/python" -m pip install --quiet -e "$ROOT[r]"
    fi
else
    note "no virtual environment at $VENV (make setup creates it); rpy2 not installed"
fi
