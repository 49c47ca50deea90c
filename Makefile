# The README's two commands are `make demo` and `make test`; both set everything up on a fresh machine.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup browser tesseract compose demo lint docs docs-serve test test-fast bench bench-ui bench-scale clean

# Python keeps the bytecode of what it imports (__pycache__), even where the shell says not to (a container's
# PYTHONDONTWRITEBYTECODE): the demo and the suite start a few hundred Python processes (workers, CLI calls,
# training ranks), and each would otherwise compile what it imports again.
unexport PYTHONDONTWRITEBYTECODE

# --no-compile: pip would compile every module of every package to bytecode, a minute of a fresh set-up on
# 2 cores, most of it never imported; the import after it compiles what every process of the tool loads.
$(STAMP): requirements.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet --no-compile -r requirements.txt
	$(BIN)/pip install --quiet --no-deps -e .
	$(BIN)/python -c "import torch, torchvision, transformers, peft, open_clip, duckdb, celery, streamlit, vitpro.cli"
	touch $(STAMP)

setup: $(STAMP)

# Builds demo data, runs every stage through real workers on embedded defaults (no services needed), then
# serves the web app on it: open the address it prints and sign in with the password it prints.
demo: $(STAMP)
	$(BIN)/vitpro demo

# Debian's chromium for the web app's browser test (Playwright drives it; nothing is downloaded by Playwright).
browser:
	@test -x /usr/bin/chromium || apt-get install -y -q chromium >/dev/null || (apt-get update -q && apt-get install -y -q chromium >/dev/null)

# Debian's Tesseract, the second OCR engine (`vitpro ocr --engine tesseract`, its tests, bench/ocr.py).
tesseract:
	@test -x /usr/bin/tesseract || apt-get install -y -q tesseract-ocr >/dev/null || (apt-get update -q && apt-get install -y -q tesseract-ocr >/dev/null)

# Debian's docker-compose: `docker compose config -q` checks the compose file (no Docker engine needed).
compose:
	@docker compose version >/dev/null 2>&1 || command -v docker-compose >/dev/null || apt-get install -y -q docker-compose >/dev/null || (apt-get update -q && apt-get install -y -q docker-compose >/dev/null)

# The linter (ruff, pinned; settings in pyproject.toml): pyflakes rules, pycodestyle, import order.
lint: $(STAMP)
	$(BIN)/ruff check --no-cache .

# The documentation site (mkdocs, material theme) into var/docs-site/, strict: a broken link, a missing
# anchor or a page left out of the nav fails. The CLI and job-spec references are generated from the code
# at build time (docs/hooks/reference.py). NO_MKDOCS_2_WARNING: the theme's banner about MkDocs 2.0.
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

# The same site served at http://127.0.0.1:8000 and rebuilt as you edit.
docs-serve: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs serve

# The linter and the docs first, then the whole suite: real DuckLake, real Celery workers, the running
# PostgreSQL and Redis, a real browser. Two pytest processes (pytest-xdist): many tests wait on a worker,
# a browser or a server process, and the other process uses that time. Files are handed out whole (pyproject.toml)
# and each process gets its share of the cores for OpenMP (tests/conftest.py). Each process has its own Redis
# database (11, 12, ...: at most 5 below Redis's 16), stores and ports.
# TEST_WORKERS=0 runs the suite in this process alone (a debugger, -x, -s).
TEST_WORKERS ?= 2
test: $(STAMP) browser tesseract compose lint docs
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS)

# Without the end-to-end tests that start workers.
test-fast: $(STAMP) tesseract compose lint docs
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) -m "not slow"

bench: $(STAMP)
	$(BIN)/python bench/ingest.py

# The web app's pages timed on synthetic stores of 100,000 and 1,000,000 samples (targets: warm < 1 s, cold < 2 s).
bench-ui: $(STAMP)
	$(BIN)/python bench/ui_pages.py --samples 100000 --samples 1000000

# How each stage's cost grows with size, on embedded and pg+s3 stores, with the targets checked (bench/scale.py).
bench-scale: $(STAMP)
	$(BIN)/python bench/scale.py

clean:
	rm -rf var .pytest_cache
