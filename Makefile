# Two commands for a fresh machine: `make demo` and `make test` (see README.md).
PYTHON ?= python3
VENV ?= .venv
# CPU machines pin the CPU torch wheel; GPU machines: `make demo CONSTRAINTS=constraints/gpu.txt`.
CONSTRAINTS ?= constraints/cpu.txt
PIP := $(VENV)/bin/python -m pip
DEPS := pyproject.toml constraints/base.txt $(CONSTRAINTS)

.PHONY: demo test lint bench clean

demo: $(VENV)/.installed
	$(VENV)/bin/tumorscale demo

test: $(VENV)/.installed-dev
	$(VENV)/bin/python -m pytest -q

lint: $(VENV)/.installed-dev
	$(VENV)/bin/ruff check src tests benchmarks

bench: $(VENV)/.installed-dev
	for script in benchmarks/bench_*.py; do $(VENV)/bin/python $$script || exit 1; done

$(VENV)/bin/python:
	$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 10), "tumorscale needs Python >= 3.10"'
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: $(VENV)/bin/python $(DEPS)
	$(PIP) install --quiet -c $(CONSTRAINTS) -e .
	touch $@

$(VENV)/.installed-dev: $(VENV)/bin/python $(DEPS)
	$(PIP) install --quiet -c $(CONSTRAINTS) -e '.[dev]'
	touch $@ $(VENV)/.installed

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache .ruff_cache
