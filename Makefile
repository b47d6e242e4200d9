# Two commands matter: `make run` and `make test`. Both bootstrap themselves.
# lint = ruff + format + mypy + buf; test = lint + generated-code drift + pytest.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | sha1sum | cut -c1-12)
NODE_STAMP := node_modules/.installed-$(shell cat package-lock.json 2>/dev/null | sha1sum | cut -c1-12)

.PHONY: run test lint gen gen-check pytest bench soak install clean-data fmt

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	@rm -f $(VENV)/.installed-*
	@touch $@

$(NODE_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	@rm -f node_modules/.installed-*
	@touch $@

install: $(STAMP) $(NODE_STAMP)

gen: install
	$(PY) scripts/gen_protos.py

gen-check: install
	$(PY) scripts/gen_protos.py --check

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy server db webhooks_http
	$(VENV)/bin/lint-imports
	npx --no-install buf lint

fmt: install
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

pytest: install
	$(VENV)/bin/pytest -q

test: lint gen-check pytest

run: install
	$(PY) -m server dev

bench: install
	$(PY) -m bench

# Nothing lost, nothing done twice, under load and faults (soak/README.md). Under 10 minutes.
soak: install
	$(PY) -m soak $(SOAK_ARGS)

clean-data:
	rm -rf .data
