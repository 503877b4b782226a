# The two commands a newcomer needs: `make demo` and `make test`. Everything else is set-up they call.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
NODE_STAMP := node_modules/.installed-stamp
CHECKOV_VENV  := .venv-checkov
CHECKOV_STAMP := $(CHECKOV_VENV)/.installed-stamp

.PHONY: install test test-fast demo dev lint bench clean

$(STAMP): requirements.txt requirements-dev.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps -e .
	touch $@

$(NODE_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

$(CHECKOV_STAMP): requirements-checkov.txt
	test -x $(CHECKOV_VENV)/bin/python || $(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/python -m pip install --quiet --disable-pip-version-check -r requirements-checkov.txt
	touch $@

install: $(STAMP) $(NODE_STAMP)

test: install
	$(BIN)/python -m pytest -q

# The developer's loop: everything but the slow end-to-end modules (marked `slow`).
test-fast: install
	$(BIN)/python -m pytest -q -m "not slow"

demo: install
	$(BIN)/python -m testbed.demo

dev: install
	$(BIN)/python -m testbed.devenv

# checkov reads the Bicep offline (--skip-download): every check passes or is skipped with its reason
# written next to the resource (`// checkov:skip=ID: why`).
lint: install $(CHECKOV_STAMP)
	$(BIN)/ruff check backup testbed tests bench function_app.py
	$(BIN)/mypy
	$(CHECKOV_VENV)/bin/checkov --directory infra --framework bicep --compact --quiet --skip-download

bench: install
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) $(CHECKOV_VENV) node_modules .dev .pytest_cache .mypy_cache .ruff_cache
