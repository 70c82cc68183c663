# Everything a fresh clone needs: `make test` and `make demo` build .venv on first use.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: help venv lint format types pytest test test-celery test-matrix package demo quickstart emulator constraints browser tools bench clean

help:
	@echo "make test       lint, types and the whole test suite (builds .venv on first use)"
	@echo "make test-celery  the CeleryExecutor suite: Redis, two Celery workers, a real Airflow (3.3 only)"
	@echo "make test-matrix  the suite on Airflow 3.0, 3.1, 3.2 and 3.3, one after another (MATRIX=\"3.0 3.1\")"
	@echo "make package    build the wheel and sdist, twine check, install the wheel in a clean venv"
	@echo "make demo       run the example DAGs in Airflow against the emulator"
	@echo "make quickstart walk through the API doc's quick start against the emulator"
	@echo "make emulator   run the WhatsInfinity emulator on 127.0.0.1:8765"
	@echo "make bench      run the benchmarks in bench/ (tables + bench/results/*.json; BENCH_ARGS=--quick)"
	@echo "make format     apply ruff's formatting and safe fixes"
	@echo "make constraints  re-resolve constraints/airflow-*.txt (MATRIX=\"3.0\" for one line)"
	@echo "make tools      install Debian's chromium (ui test), php (the doc's PHP examples) and redis-server (test-celery) if missing"

venv: $(STAMP)

# The newest Airflow; the other lines of the matrix get .venv-3.0 and so on (scripts/matrix.py).
CONSTRAINTS := constraints/airflow-3.3.txt
$(STAMP): pyproject.toml $(CONSTRAINTS)
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c $(CONSTRAINTS) -e ".[dev,bench,release]"
	@touch $(STAMP)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(STAMP)
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

types: $(STAMP)
	$(VENV)/bin/mypy

pytest: $(STAMP)
	$(PY) -m pytest $(PYTEST_ARGS)

test: lint types pytest

# The CeleryExecutor suite (tests/deployment/test_celery_executor.py, marker `celery`): a real Airflow
# with Redis (Debian's redis-server, `make tools`) and two Celery workers. Slow and 3.3 only, so never
# part of `make test` or the matrix; CI runs it as a step of its own. The venv gets the celery extra.
CELERY_STAMP := $(VENV)/.installed-celery
$(CELERY_STAMP): $(STAMP)
	$(PY) -m pip install --quiet -c $(CONSTRAINTS) -e ".[dev,bench,release,celery]"
	@touch $(CELERY_STAMP)

test-celery: $(CELERY_STAMP)
	$(PY) -m pytest -m celery tests/deployment $(PYTEST_ARGS)

# Every Airflow line the provider claims, each in its own venv from constraints/airflow-<line>.txt.
MATRIX ?=
test-matrix: $(STAMP)
	$(PY) scripts/matrix.py test $(MATRIX) $(PYTEST_ARGS)

# What a release ships: a wheel and an sdist PyPI accepts, and a wheel that installs on its own.
package: $(STAMP)
	$(PY) scripts/package.py

demo: $(STAMP)
	$(PY) scripts/demo.py

quickstart: $(STAMP)
	$(PY) scripts/quickstart.py

emulator: $(STAMP)
	$(VENV)/bin/whatsinfinity-emulator --host 127.0.0.1 --port 8765

# Benchmarks, never part of `make test`. The venv holds the bench extra (the http and slack providers
# they compare against) so that mypy checks bench/ against them on every machine.
bench: $(STAMP)
	$(PY) -m bench $(BENCH_ARGS)

# Pins every transitive dependency of each Airflow line, so that CI and a new machine install what the
# suite was last run with. Older lines resolve as on the day after their release (see the script).
constraints:
	$(PYTHON) scripts/matrix.py constraints $(MATRIX)

# Debian packages some tests drive: chromium for the ui test (Playwright never downloads a browser
# here), php for the API doc's PHP examples, and redis-server, the broker of `make test-celery` (the
# test starts its own on a free port; no daemon is needed). Root needs no sudo.
APT_PACKAGES := chromium php-cli php-curl redis-server
browser tools:
	@missing=""; for pkg in $(APT_PACKAGES); do dpkg -s $$pkg >/dev/null 2>&1 || missing="$$missing $$pkg"; done; \
	if [ -z "$$missing" ]; then echo "installed: $(APT_PACKAGES)"; else \
	  SUDO=; if [ "$$(id -u)" != 0 ]; then SUDO=sudo; command -v sudo >/dev/null || { echo "make tools: run as root or install sudo" >&2; exit 1; }; fi; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing; \
	fi

clean:
	rm -rf $(VENV) $(VENV)-3.* .mypy_cache .pytest_cache .ruff_cache build dist *.egg-info
