# Two entry points: `make demo` and `make test`. Both create/update .venv on their own.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export RADAE_DATA ?= $(abspath ../shared/data)

.PHONY: demo test test-fast venv bench clean browser

venv: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip setuptools wheel
	# torch first and pinned: the local CPU wheel; a looser spec pulls GBs of CUDA packages
	$(BIN)/pip install -q torch==2.13.0
	# pyradiomics does not build in isolation; it needs these present first
	$(BIN)/pip install -q numpy versioneer setuptools wheel
	$(BIN)/pip install -q --no-build-isolation pyradiomics==3.0.1
	$(BIN)/pip install -q -e '.[dev]'
	# an editable install compiles nothing; byte-compile radae as a wheel install would (start-up of every command)
	$(BIN)/python -m compileall -q radae
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/radae run pipelines/demo.yaml

test: $(STAMP)
	$(BIN)/python -m pytest -q

# the quick loop while editing: everything but the tests marked slow
test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow"

bench: $(STAMP)
	$(BIN)/python benchmarks/run_all.py

browser:
	command -v chromium >/dev/null && command -v chromedriver >/dev/null || \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver)

clean:
	rm -rf $(VENV) runs
