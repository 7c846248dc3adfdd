# Two commands do everything on a fresh Debian 12 machine with Python 3.11:
#   make demo   set up .venv, train a built-in model, summarize a shipped observation, SBC + plots
#   make test   set up .venv and R, run pytest, then R CMD check of the R package (its testthat suite)
#               and render its vignettes (slow statistical checks: make test-slow)

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
# R, lme4, brms and rpy2 for the R cross-checks (scripts/setup-r.sh; a note and no R tests where it cannot install)
RSTAMP := $(VENV)/.r-installed
# the CPU wheel of torch lies on disk here; installing it first keeps pip from pulling a CUDA build
TORCH  ?= torch==2.13.0

.PHONY: setup setup-r demo test test-slow bench clean vignette-fits

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install --quiet "$(TORCH)"
	$(PY) -m pip install --quiet -e ".[dev,stan,arviz]"
	touch $(STAMP)

setup-r: $(RSTAMP)

$(RSTAMP): scripts/setup-r.sh $(STAMP)
	bash scripts/setup-r.sh $(VENV) || echo "setup-r: failed; the R cross-checks will skip"
	touch $(RSTAMP)

demo: $(STAMP)
	$(VENV)/bin/amortbayes demo --out amortbayes-demo

test: $(STAMP) $(RSTAMP)
	$(PY) -m pytest -q
	bash scripts/check-r.sh $(PY)

test-slow: $(STAMP) $(RSTAMP)
	$(PY) -m pytest -q -m slow

bench: $(STAMP)
	$(PY) benchmarks/latency.py
	$(PY) benchmarks/training.py

clean:
	rm -rf $(VENV) amortbayes-demo .pytest_cache .Rcheck-out

# the stored fits the vignettes render from (trains amortizers, runs brms and its grouped k-fold: about an hour)
vignette-fits: $(STAMP) $(RSTAMP)
	cd /tmp && R CMD build --no-build-vignettes --no-manual $(CURDIR) && R CMD INSTALL amortbayes_*.tar.gz
	OMP_NUM_THREADS=1 AMORTBAYES_PYTHON=$(abspath $(PY)) Rscript scripts/vignette-fits.R
