# Two commands set everything up on a fresh machine:
#   make run    create .venv with a Python >= 3.12, install psample, sample eight schools, print ArviZ diagnostics
#   make test   the same environment, then the test suite
VENV := .venv
STAMP := $(VENV)/.installed

.PHONY: run test test-fast test-slow bench clean

$(STAMP): pyproject.toml
	@test -x $(VENV)/bin/python || $$(bash .ci/find-python) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --upgrade pip
	$(VENV)/bin/python -m pip install --quiet -e ".[test]"
	@touch $(STAMP)

run: $(STAMP)
	$(VENV)/bin/psample run

# Fast tests, then the long statistical tests (marker `slow`), spread over the cores by
# pytest-xdist: much of a test's time is XLA compiling on one thread, so two workers on two
# cores shorten the run (CI on a fresh clone: 18 min serial at 9569ff5, 12 min 48 s at bb58004).
# Every test draws from its own fixed seed, so results do not depend on which worker runs it.
PYTEST := $(VENV)/bin/python -m pytest -q -n auto --maxprocesses=4 --dist worksteal

# One session for fast and slow tests, so that work stealing packs the long statistical tests
# beside the short ones; the slowest durations are printed for whoever shortens the suite.
test: $(STAMP)
	$(PYTEST) -m "slow or not slow" --durations=25

test-fast: $(STAMP)
	$(PYTEST) -m "not slow"

test-slow: $(STAMP)
	$(PYTEST) -m slow

clean:
	rm -rf $(VENV) build *.egg-info
