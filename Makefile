# The two commands a newcomer needs: `make run` and `make test`.
# Each creates .venv with the pinned requirements when missing or out of date.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The matching engine's compiled core (C; gcc and the Python headers, nothing downloaded).
# Without a compiler the pure-Python engine serves, with the same behaviour.
ENGINE_CORE := $(VENV)/.engine-core

.PHONY: run test lint install

$(STAMP): requirements.txt requirements-dev.txt
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Kootabase needs Python 3.11 or newer")'
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	@touch $(STAMP)

$(ENGINE_CORE): $(STAMP) matching/engine/_native/_book.c matching/engine/_native/build.py
	@$(BIN)/python -m matching.engine._native.build \
		|| echo "note: the engine's compiled core did not build; the pure-Python engine will serve"
	@touch $(ENGINE_CORE)

install: $(ENGINE_CORE)

## Start the exchange on embedded defaults with demo data on http://127.0.0.1:8000
run: $(ENGINE_CORE)
	$(BIN)/python manage.py run_embedded

## Run the whole test suite on the embedded setup
test: $(ENGINE_CORE)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
