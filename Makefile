# Every target does its own set-up on a fresh machine.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
RUNS   ?= runs
export HF_HUB_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false

.PHONY: install test test-fast demo bench-generate bench-score bench-fid-memory browser dashboard clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[cpu,test]'
	touch $(STAMP)

install: $(STAMP)

# Headless Chromium for the dashboard's browser tests (Debian's package).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  echo "installing Debian's chromium for the browser tests"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

test: $(STAMP) browser
	$(BIN)/python -m pytest -q -ra

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow and not browser"

demo: $(STAMP)
	$(BIN)/python -m bench.demo --runs $(RUNS)

bench-generate: $(STAMP)
	$(BIN)/python scripts/bench_generate.py

bench-score: $(STAMP)
	$(BIN)/python scripts/bench_score.py

bench-fid-memory: $(STAMP)
	$(BIN)/python scripts/bench_fid_memory.py

dashboard: $(STAMP)
	$(BIN)/t2i-dashboard --runs $(RUNS)

clean:
	rm -rf $(RUNS) .pytest_cache
