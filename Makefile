# Two commands on a fresh machine:  `make demo`  and  `make test`.
PY ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
TORCH_SPEC ?= torch==2.13.0
MEDIAPIPE_SPEC ?= mediapipe==0.10.21
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: install dev demo test lint typecheck unit bench clean chromium

$(BIN)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# torch first, pinned: an open range would pull a multi-GB CUDA build.
	$(BIN)/pip install -q "$(TORCH_SPEC)"
	# mediapipe without its declared deps (jax, opencv-contrib); its run-time deps are in pyproject.
	$(BIN)/pip install -q --no-deps "$(MEDIAPIPE_SPEC)"
	$(BIN)/pip install -q -e ".[dev,ray]"
	touch $@

install: $(BIN)/.installed

demo: install
	$(BIN)/mar demo --out runs/demo

lint: install
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

typecheck: install
	$(BIN)/mypy

unit: install
	$(BIN)/python -m pytest -q tests

# Headless Chromium for the browser tests (report images, timeline page), installed with apt-get
# when missing (root or password-less sudo). Where it cannot be installed the tests skip and say why,
# except with MAR_REQUIRE_CHROMIUM=1 (.ci/run sets it on CI): then it is an error here and in pytest.
CHROMIUM_LOG ?= $(or $(TMPDIR),/tmp)/mar-chromium-install.log
chromium:
	@[ -n "$$MAR_CHROMIUM" ] || command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo "sudo -n" ); \
	  echo "installing chromium (apt-get) for the browser tests"; \
	  ( $$SUDO apt-get update -q && $$SUDO apt-get install -y -q chromium ) >"$(CHROMIUM_LOG)" 2>&1 || { \
	    if [ "$${MAR_REQUIRE_CHROMIUM:-0}" = 1 ]; then \
	      tail -n 20 "$(CHROMIUM_LOG)" >&2; \
	      echo "error: chromium could not be installed and MAR_REQUIRE_CHROMIUM=1 (log: $(CHROMIUM_LOG))" >&2; \
	      exit 1; \
	    fi; \
	    echo "chromium could not be installed: the browser tests will be skipped (log: $(CHROMIUM_LOG))"; }; }

test: install chromium lint typecheck unit

# every benchmark in its make-bench mode (<= 30 min on 2 cores), one summary table (benchmarks/README.md)
bench: install
	$(BIN)/python benchmarks/run_all.py

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info
