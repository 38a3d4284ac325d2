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

# Fast tests, then the long statistical tests (marker `slow`).
test: $(STAMP)
	$(VENV)/bin/python -m pytest -q -m "not slow"
	$(VENV)/bin/python -m pytest -q -m slow

test-fast: $(STAMP)
	$(VENV)/bin/python -m pytest -q -m "not slow"

test-slow: $(STAMP)
	$(VENV)/bin/python -m pytest -q -m slow

clean:
	rm -rf $(VENV) build *.egg-info
