#!/usr/bin/env bash
# The R package's checks for make test: R CMD build, R CMD check (its testthat suite included;
# 0 errors and 0 warnings required) and the vignettes rendered from their stored results.
#
#   scripts/check-r.sh PYTHON      (the project's venv Python; run from the repository root)
#
# Where R or its packages are missing (scripts/setup-r.sh could not install them) it prints one
# note and exits 0, as the Python side's R cross-checks skip.
set -euo pipefail

PYTHON="$(cd "$(dirname "$1")" && pwd)/$(basename "$1")"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
if ! command -v Rscript >/dev/null 2>&1 || ! Rscript -e 'for (p in c("reticulate", "testthat", "rstantools")) library(p, character.only = TRUE)' >/dev/null 2>&1; then
    echo "check-r: R with reticulate, rstantools and testthat is not installed (scripts/setup-r.sh); the R package is not checked"
    exit 0
fi
export AMORTBAYES_PYTHON="$PYTHON"
export _R_CHECK_FORCE_SUGGESTS_=false
OUT="$ROOT/.Rcheck-out"
rm -rf "$OUT" && mkdir -p "$OUT"
VERSION="$(sed -n 's/^Version: //p' DESCRIPTION)"
(cd "$OUT" && R CMD build --no-build-vignettes --no-manual "$ROOT" >build.log 2>&1) || { cat "$OUT/build.log"; exit 1; }
(cd "$OUT" && R CMD check --no-manual --ignore-vignettes "amortbayes_${VERSION}.tar.gz") || true
LOG="$OUT/amortbayes.Rcheck/00check.log"
tail -n 25 "$LOG"
if grep -qE "^Status: .*(ERROR|WARNING)" "$LOG" || ! grep -q "^Status:" "$LOG"; then
    for f in "$OUT"/amortbayes.Rcheck/tests/*.Rout.fail; do [ -f "$f" ] && tail -n 60 "$f"; done
    echo "check-r: R CMD check found errors or warnings ($LOG)"
    exit 1
fi
# the vignettes, rendered from their stored fits with the package as installed by the check
if ls vignettes/*.Rmd >/dev/null 2>&1; then
    OUT_HTML="$OUT/vignettes" R_LIBS="$OUT/amortbayes.Rcheck:${R_LIBS:-}" Rscript -e '
      for (f in list.files("vignettes", "[.]Rmd$", full.names = TRUE))
        rmarkdown::render(f, output_dir = Sys.getenv("OUT_HTML"), quiet = TRUE, envir = new.env())' \
      || { echo "check-r: a vignette failed to render"; exit 1; }
fi
echo "check-r: R CMD check passed (0 errors, 0 warnings)"
