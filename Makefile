# Two commands for a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | sha1sum | cut -c1-12)
# Some machines set PYTHONDONTWRITEBYTECODE: then every server, sandbox worker and test
# process compiles the project from source again (0.5 s a process start, here).
unexport PYTHONDONTWRITEBYTECODE
# Test processes side by side (pytest-xdist). Most tests wait on servers, sandboxes and
# browsers. Then the DP audit's power checks (marker `timed`: a wall-clock budget on one
# core, single-threaded) run one per core with nothing else beside them, and last, alone,
# the few that look at every process on the machine or time a whole check (`serial`).
JOBS ?= 2
PARALLEL := -n $(JOBS) --dist loadscope
ONE_PER_CORE := -n $(JOBS) --dist load --maxschedchunk 1
# The files that hold the `timed` and `serial` tests: those runs collect only these (the
# whole suite takes about 20 s of CPU to collect). tests/test_markers.py keeps the lists right.
TIMED_FILES := tests/test_audit_ding.py tests/test_policies_corpus.py tests/test_policies_unit.py
SERIAL_FILES := tests/test_audit_sandbox.py tests/test_execution_dask.py tests/test_execution_sandbox.py
# pytest exits 5 when a marker selects no test (the PostgreSQL run has no serial or timed test)
NONE_IS_FINE := || [ $$? -eq 5 ]

.PHONY: lint-imports demo test test-api test-postgres test-browser lint bench install clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[test,torch]'
	$(BIN)/pip install --quiet --no-deps 'pycanon==1.3.6' 'anjana==1.2.3' 'acro==1.0.2'  # see pyproject.toml
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 >/dev/null
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

install: $(STAMP)

## The full workflow on an embedded site: upload, submit, check, approve, run, fetch.
demo: install
	$(BIN)/datasite demo

browser-deps:
	@command -v chromium >/dev/null || (apt-get update -qq && apt-get install -y -qq chromium >/dev/null)

## Set up and pass the tests (SQLite; the browser tests drive Debian's chromium).
test: install browser-deps lint-imports
	$(BIN)/ruff check .
	$(BIN)/pytest -q $(PARALLEL) -m "not serial and not timed" --durations=25
	$(BIN)/pytest -q $(ONE_PER_CORE) -m timed --durations=10 $(TIMED_FILES)
	$(BIN)/pytest -q -m serial --durations=10 $(SERIAL_FILES)

## The layers point one way: contract <- policies <- client <- researcher_kit <- server.
lint-imports: install
	$(BIN)/lint-imports

## The API alone: schemathesis against the OpenAPI schema (0 server errors) and input checks.
test-api: install
	$(BIN)/pytest -q tests/test_schemathesis.py tests/test_api_validation.py

## The integration suite again, against the PostgreSQL on 127.0.0.1:5432.
test-postgres: install
	DATASITE_TEST_DB=postgres $(BIN)/pytest -q $(PARALLEL) \
		-m "integration and not one_database and not serial and not timed"
	DATASITE_TEST_DB=postgres $(BIN)/pytest -q \
		-m "integration and not one_database and (serial or timed)" \
		$(TIMED_FILES) $(SERIAL_FILES) $(NONE_IS_FINE)

bench: install
	$(BIN)/python bench/run_all.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
