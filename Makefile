# The README's two commands: `make reproduce` (main job) and `make test` (tests). Both create .venv.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml | sha256sum | cut -c1-12)
PRESET ?= smoke

.PHONY: reproduce test test-fast lint venv notebooks-inplace data-build docs demo clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch first, pinned: the local CPU wheel (an unpinned torch pulls a multi-GB CUDA build)
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[dev,rnafm-hf]'
	$(PY) -m ipykernel install --sys-prefix --name python3 >/dev/null
	@rm -f $(VENV)/.installed-* && touch $@

# Main job: verify the embedded real data, run every notebook headless (papermill) into runs/, write figures/.
reproduce: venv
	$(PY) -m corelib data verify
	$(PY) -m corelib run-notebooks --preset $(PRESET)
	$(PY) -m corelib.report.docs

# Tests: unit tests, then every notebook under nbval (only # NBVAL_CHECK_OUTPUT cells are compared).
# Tests write only into a temporary folder (tests/conftest.py sets CORELIB_RUNS and CORELIB_FIGURES).
test: venv
	$(PY) -m pytest -q tests --nbval-lax notebooks --sanitize-with tests/nbval_sanitize.cfg

# The development loop (under two minutes): no notebooks, no slow / apt / distributed tests.
test-fast: venv
	$(PY) -m pytest -q tests -m "not slow and not apt and not distributed"

lint: venv
	$(VENV)/bin/ruff check corelib tests
	$(VENV)/bin/lint-imports --no-cache

# docs/results.md is generated from the committed figures/05_*.md tables.
docs: venv
	$(PY) -m corelib.report.docs

# Re-execute the notebooks in place with their default (smoke) parameters: refreshes the outputs nbval compares.
notebooks-inplace: venv
	cd notebooks && ../$(VENV)/bin/jupyter nbconvert --to notebook --execute --inplace [0-9][0-9]_*.ipynb

# The demo miniature (docs/pilot.md): the full pools rebuilt from the Debian packages (sha256 in
# data_manifests/*_full.yaml), then the pruning-rate grid per modality (each at most an hour on 2 CPU cores;
# resumable: rerun after a kill), its tables, figures and docs/results.md.
FULL := $(or $(CORELIB_CACHE),data_cache)/full
demo: venv $(FULL)/rna_full.fasta.gz $(FULL)/protein_full.fasta.gz
	$(PY) -m corelib data verify
	$(PY) -m corelib experiment --preset demo --modality rna
	$(PY) -m corelib experiment --preset demo --modality protein
	$(PY) -m corelib.report.docs

$(FULL)/%_full.fasta.gz: | venv
	$(PY) -m corelib data build $*_demo --full

data-build: venv
	$(PY) -m corelib data build

clean:
	rm -rf runs .venv
