# Two entry points: `make demo` and `make test`. Each installs what it needs.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test lint prometheus-tools

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/distillwatch demo $(ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .

# Real Prometheus tools for tests/observability (promtool, prometheus, amtool): Debian
# packages. The tests start their own Prometheus on a free port, never the packaged service.
# The same for the alert store's tests (a real PostgreSQL server in a temporary directory,
# never the packaged service) and the console's browser tests (headless chromium driven by
# Playwright, which cannot download its own browsers here).
prometheus-tools:
	command -v promtool >/dev/null && command -v amtool >/dev/null || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus prometheus-alertmanager)
	ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && command -v chromium >/dev/null || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql chromium fonts-dejavu-core)

# pytest exits 5 when it collects nothing: that is a failure here, on purpose. Two
# processes, a file each at a time (the broker tests share a session broker per process and
# wait far more than they compute); ARGS="-n 0" runs in one process.
test: $(STAMP) prometheus-tools
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q -n 2 --dist loadfile $(ARGS)
