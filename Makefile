# `make run` and `make test` each build .venv from nothing when needed, then act.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip
PIP_FLAGS := --disable-pip-version-check --progress-bar off -q

.PHONY: run quick test test-all docs readme-figures bench bench-report venv venv-dev lock clean

run: $(VENV)/.installed
	$(BIN)/lstmbt run

quick: $(VENV)/.installed
	$(BIN)/lstmbt run --quick

test: $(VENV)/.installed-dev
	$(BIN)/python -m pytest -m "not slow"

test-all: $(VENV)/.installed-dev
	$(BIN)/python -m pytest

# The API reference from the numpydoc docstrings (pdoc), into docs/api/ (git-ignored).
docs: $(VENV)/.installed-dev
	$(BIN)/python docs/build.py

# README.md's run figures (its <!-- figures:NAME --> regions) from real runs made under runs/readme:
# the default run, the same with train.refit = true, and a quick run with `lstmbt predict --quick`
# (a few minutes on 2 cores; runs already there are made again). See docs/readme_figures.py.
readme-figures: $(VENV)/.installed
	rm -rf runs/readme
	$(BIN)/python docs/readme_figures.py --make runs/readme

# Walk-forward speed and quality on workload W, per training mode and against darts (~30 min;
# the first run also builds bench/.darts-venv). Writes bench/RESULTS.md. Not part of `make test`.
bench: $(VENV)/.installed
	$(BIN)/python bench/walkforward.py --profile

bench-report: $(VENV)/.installed
	$(BIN)/python bench/report.py

venv: $(VENV)/.installed
venv-dev: $(VENV)/.installed-dev

$(VENV)/.created:
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "lstmbt needs Python >= 3.11; run make with PYTHON=python3.11")'
	$(PYTHON) -m venv $(VENV)
	$(PIP) install $(PIP_FLAGS) --upgrade pip
	touch $@

$(VENV)/.installed: $(VENV)/.created pyproject.toml requirements.lock
	$(PIP) install $(PIP_FLAGS) -c requirements.lock -e .
	touch $@

$(VENV)/.installed-dev: $(VENV)/.created pyproject.toml requirements.lock
	$(PIP) install $(PIP_FLAGS) -c requirements.lock -e '.[dev]'
	touch $@ $(VENV)/.installed

# Re-resolve every dependency from scratch and pin the result. torch is pinned without the
# local "+cpu" tag so the lock also installs where torch comes from PyPI.
lock:
	rm -rf .lock-venv
	$(PYTHON) -m venv .lock-venv
	.lock-venv/bin/python -m pip install $(PIP_FLAGS) --upgrade pip
	.lock-venv/bin/python -m pip install $(PIP_FLAGS) torch==2.13.0 -e '.[dev]'
	.lock-venv/bin/python -m pip freeze --exclude-editable | sed -E 's/^torch==([0-9.]+)\+.*/torch==\1/' > requirements.lock
	rm -rf .lock-venv
	@echo "requirements.lock regenerated ($$(wc -l < requirements.lock) packages)"

clean:
	rm -rf $(VENV) .pytest_cache
