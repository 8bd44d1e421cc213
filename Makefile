# The two commands of the README: `make lab` (the workbook) and `make test` (the suite).
# Each builds its own virtual environment in .venv from pyproject.toml and, as root,
# installs the Debian packages it needs (.ci/system-deps.sh: graphviz, chromium);
# nothing else needs to be installed by hand. `make report` writes the headless report.

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

# The report's configuration: `make report REPORT_PLATFORM=tdx REPORT_PAGES=1`.
REPORT_DIR      ?= reports
REPORT_PLATFORM ?= snp
REPORT_SERIES   ?= v8
REPORT_PAGES    ?= 2

.PHONY: lab test report bench clean system-deps strip git-hooks

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[lab,test]'
	touch $(STAMP)

# Notebooks are committed without outputs: inside a git checkout, a pre-commit hook that
# refuses them (gmemlab/githooks.py; `make strip` clears them). Outside one, nothing, and
# never a failure.
git-hooks:
	-@$(PYTHON) gmemlab/githooks.py install

system-deps:
	bash .ci/system-deps.sh

# JupyterLab defaults for the workbook: start a notebook's kernel without asking, fetch
# no news (installed into the venv's JupyterLab, not the user's own settings).
LAB_OVERRIDES := $(VENV)/share/jupyter/lab/settings/overrides.json
$(LAB_OVERRIDES): .ci/jupyterlab-overrides.json $(STAMP)
	mkdir -p $(dir $@)
	cp .ci/jupyterlab-overrides.json $@

# --allow-root only where make runs as root (JupyterLab refuses root otherwise).
lab: system-deps $(STAMP) $(LAB_OVERRIDES) git-hooks
	$(VENV)/bin/jupyter lab $(if $(filter 0,$(shell id -u)),--allow-root) notebooks/

report: system-deps $(STAMP)
	$(VENV)/bin/gmemlab report --out $(REPORT_DIR) --platform $(REPORT_PLATFORM) \
		--series $(REPORT_SERIES) --pages $(REPORT_PAGES)

# Before a commit: sync each notebook with its paired .py, then strip the outputs.
strip: $(STAMP)
	$(VENV)/bin/jupytext --quiet --sync notebooks/[0-9]*.ipynb
	$(PY) -c 'from gmemlab.report import strip_notebooks; print(*strip_notebooks(), sep="\n")'

test: system-deps $(STAMP) git-hooks
	$(PY) -m pytest -q $(PYTEST_ARGS)

# The benchmarks (benchmarks/run.py): explorer, symmetry, reference engine, replay,
# interactivity, notebooks, and SPIN on the same semantics at 4 and 5 pages (benchmarks/peers/;
# the Debian package spin is installed with apt-get when run as root; fails only if SPIN's
# counts differ from gmemlab's, see docs/benchmarks.md). A table on stderr, the JSON
# figures on stdout and in $(BENCH_OUT). `make bench BENCH_ARGS=--quick` for a smoke run.
BENCH_OUT  ?= reports/bench.json
BENCH_ARGS ?=
BENCH_STAMP := $(VENV)/.bench-installed
$(BENCH_STAMP): $(STAMP)
	$(PY) -m pip install --quiet -e '.[lab,test,bench]'
	touch $(BENCH_STAMP)

bench: system-deps $(STAMP) $(BENCH_STAMP)
	mkdir -p $(dir $(BENCH_OUT))
	$(PY) benchmarks/run.py --out $(BENCH_OUT) $(BENCH_ARGS)

clean:
	rm -rf $(VENV) build *.egg-info
