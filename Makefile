# Two commands set everything up on a fresh machine:
#   make run    create .venv with a Python >= 3.12, install psample, sample eight schools, print ArviZ diagnostics
#   make test   the same environment, then the fast test suite (CI runs it first, .ci/run)
VENV := .venv
STAMP := $(VENV)/.installed

.PHONY: run test test-fast test-ci test-heavy test-slow test-all bench readme docs docs-examples clean

$(STAMP): pyproject.toml
	@test -x $(VENV)/bin/python || $$(bash .ci/find-python) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --upgrade pip
	$(VENV)/bin/python -m pip install --quiet -e ".[test]"
	@touch $(STAMP)

run: $(STAMP)
	$(VENV)/bin/psample run

# Tests spread over the cores by pytest-xdist: much of a test's time is XLA compiling on one
# thread, so two workers on two cores shorten the run. Every test draws from its own fixed seed,
# so results do not depend on which worker runs it.
PYTEST := $(VENV)/bin/python -m pytest -q -n auto --maxprocesses=4 --dist worksteal

# The fast suite, the README's test command and the developer loop: every test but the `heavy`
# end-to-end runs and the long statistical runs (`slow`), a few minutes on 2 cores. The slowest
# durations are printed for whoever shortens it.
test: $(STAMP)
	$(PYTEST) -m "not slow and not heavy" --durations=15

# The same (the name of earlier rounds).
test-fast: test

# The `heavy` end-to-end checks that CI runs after the fast suite (marker `ci`): each protects a
# promise to users that no fast test checks (README.md's quick start, the command line on a
# user's model file, the ArviZ surface, the hierarchical samplers' statistical runs).
test-ci: $(STAMP)
	$(PYTEST) -m "ci and not slow" --durations=15

# Every `heavy` test (end-to-end runs, devices and hosts, checkpoints, the command line, the
# wheel, the docs pages' long snippets), `ci` ones included: minutes, not in CI.
test-heavy: $(STAMP)
	$(PYTEST) -m "heavy and not slow" --durations=25

# The long statistical runs (marker `slow`).
test-slow: $(STAMP)
	$(PYTEST) -m slow --durations=15

# Everything: fast, heavy and slow.
test-all: $(STAMP)
	$(PYTEST) -m "slow or not slow" --durations=25

# Regenerate README.md's generated blocks (command-line help, signatures) from the code;
# tests/test_readme.py fails until this has been run after a change to either.
readme: $(STAMP)
	$(VENV)/bin/python tools/readme.py

# The documentation site (docs/, Sphinx): the same environment plus the `docs` extra. Warnings are
# errors and every cross-reference must resolve (-n, nitpicky), so a renamed function that a page
# or docstring still names fails the build. The fast gallery scripts (examples/plot_*.py) run on
# every build; PSAMPLE_GALLERY_RUN=0 skips them (code only). No -j: a parallel build warns about
# a name documented twice (psample.graphs.Estimate, psample.diagnostics.batch_means.Estimate) where
# a serial one does not, and saved no CPU time on the 2-core box.
DOCS_STAMP := $(VENV)/.installed-docs

$(DOCS_STAMP): $(STAMP)
	$(VENV)/bin/python -m pip install --quiet -e ".[test,docs]"
	@touch $(DOCS_STAMP)

SPHINX := $(VENV)/bin/python -m sphinx -W --keep-going -n -b html docs docs/_build/html

docs: $(DOCS_STAMP)
	$(SPHINX)
	@echo "open docs/_build/html/index.html"

# The site with every gallery script run, the long ones too (a minute or more each on a CPU), so
# that their pages show the output and figures of the current code. Later `make docs` builds keep
# a script's outputs while the script is unchanged (sphinx-gallery's checksum in
# docs/auto_examples/); `make clean` drops them. PSAMPLE_GALLERY_RERUN=1 reruns also the scripts
# whose outputs are current; their output files (--plot, --out) go to docs/_build/gallery_files/.
docs-examples: $(DOCS_STAMP)
	PSAMPLE_GALLERY_PATTERN='.*' PSAMPLE_GALLERY_RERUN=1 $(SPHINX)
	@echo "open docs/_build/html/auto_examples/index.html"

clean:
	rm -rf $(VENV) build *.egg-info docs/_build docs/api/generated docs/auto_examples docs/sg_execution_times.rst
