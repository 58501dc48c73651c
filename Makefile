# Every target does its own set-up on a fresh machine.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
RUNS   ?= runs
export HF_HUB_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false

.PHONY: install clip-retrieval-env test test-fast demo builtin-models bench-generate bench-score bench-fid-memory bench-knn perf browser dashboard clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[cpu,test]'
	# MTCNN face detector for the bias probe; its metadata pins torch<2.3, so no deps (it needs none of ours)
	$(BIN)/pip install --quiet --no-deps 'facenet-pytorch==2.6.0'
	touch $(STAMP)

install: $(STAMP)

# clip-retrieval in its own environment: its pins clash with the core's (see
# requirements/clip-retrieval.txt). The interop tests run its `index` and `back`.
CR_VENV  := .venv-clip-retrieval
CR_STAMP := $(CR_VENV)/.installed

$(CR_STAMP): requirements/clip-retrieval.txt
	test -x $(CR_VENV)/bin/python || $(PYTHON) -m venv $(CR_VENV)
	$(CR_VENV)/bin/pip install --quiet --upgrade pip
	$(CR_VENV)/bin/pip install --quiet -r requirements/clip-retrieval.txt
	touch $(CR_STAMP)

clip-retrieval-env: $(CR_STAMP)

# Headless Chromium for the dashboard's browser tests (Debian's package).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  echo "installing Debian's chromium for the browser tests"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

# The layering contracts of pyproject.toml ([tool.importlinter]) first, then the suite.
test: $(STAMP) browser $(CR_STAMP)
	$(BIN)/lint-imports --no-cache
	$(BIN)/python -m pytest -q -ra

test-fast: $(STAMP)
	$(BIN)/lint-imports --no-cache
	$(BIN)/python -m pytest -q -m "not slow and not browser"

demo: $(STAMP)
	$(BIN)/python -m bench.demo --runs $(RUNS)
	$(BIN)/python -m audit.demo --runs $(RUNS)

# Retrain the built-in models from scratch (seeded, resumable: run it again after
# an interruption) and re-measure the model card.  Checkpoints and loss curves go
# to build/training/; the weights to bench/models/builtin/.  See docs/builtin-model.md
# for the measured wall time on 2 CPU cores.
builtin-models: $(STAMP)
	$(BIN)/python scripts/train_builtin_generator.py
	$(BIN)/python scripts/train_memorized_lora.py
	$(BIN)/python scripts/train_watermark_head.py
	$(BIN)/python scripts/train_evaluator_clip.py
	$(BIN)/python scripts/make_model_card.py

bench-generate: $(STAMP)
	$(BIN)/python scripts/bench_generate.py

bench-score: $(STAMP)
	$(BIN)/python scripts/bench_score.py

bench-fid-memory: $(STAMP)
	$(BIN)/python scripts/bench_fid_memory.py

# autofaiss IVF-PQ vs exact search on 1M x 512 clustered vectors; figures to build/bench/knn.json.
# The key: autofaiss' own pick at 1M (IVF16384) is 110 B/vector by its own estimate, over the
# 100 B goal, and 10x the k-means cost; 4096 lists = 4 sqrt(N), faiss' guideline (docs/scale.md).
# Smaller first: make bench-knn KNN_ARGS="--n 100000 --index-key ''"  ('' = autofaiss chooses)
KNN_INDEX_KEY ?= OPQ64_448,IVF4096_HNSW32,PQ64x8
bench-knn: $(STAMP)
	$(BIN)/python scripts/bench_knn.py --index-key '$(KNN_INDEX_KEY)' $(KNN_ARGS)

# Every performance figure in one run, each a ratio measured in that run: build/perf/perf.json and
# docs/perf.md (about 15 minutes on 2 cores).  The kNN goal's own size: make perf PERF_ARGS="--knn-size 1000000"
perf: $(STAMP)
	$(BIN)/python scripts/perf.py $(PERF_ARGS)

dashboard: $(STAMP)
	$(BIN)/t2i-dashboard --runs $(RUNS)

clean:
	rm -rf $(RUNS) .pytest_cache
