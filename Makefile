# softgrad: two commands on a fresh machine.
#   make all    regenerate the results (papermill, PROFILE=quick by default, CPU) and build the book
#   make test   run the test suite (losses, engine, nbval regression of the notebooks)
PYTHON3 ?= python3
VENV    ?= .venv
PY      := $(VENV)/bin/python
PROFILE ?= quick
# Data root: ../shared/data where it exists (offline workspaces), else ./data (torchvision downloads there).
SOFTGRAD_DATA ?= $(if $(wildcard ../shared/data/MNIST/raw),$(abspath ../shared/data),$(CURDIR)/data)
export SOFTGRAD_DATA
# Large tensors: glibc returns >32 MB blocks to the OS and re-faults them; tcmalloc avoids that if present.
TCMALLOC := $(firstword $(wildcard /usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4 /usr/lib/aarch64-linux-gnu/libtcmalloc_minimal.so.4))

.PHONY: all setup results book test test-fast bench clean-book
all: results book

setup: $(VENV)/.installed
$(VENV)/.installed: pyproject.toml
	$(PYTHON3) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[notebooks,dev]'
	$(PY) -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (softgrad)" >/dev/null
	$(PY) -c "import torch, torchvision; print('torch', torch.__version__, 'torchvision', torchvision.__version__)"
	touch $@

results: setup
	$(PY) -m softgrad.pipeline notebooks --profile $(PROFILE)

book: setup
	$(PY) -m softgrad.pipeline book --profile $(PROFILE)

test: setup
	$(PY) -m pytest -n 2 --dist loadfile tests
	$(PY) -m softgrad.pipeline nbval --profile ci

test-fast: setup
	$(PY) -m pytest -n 2 --dist loadfile tests

DEVICE := $(shell $(PY) -c "import torch; print('cuda' if torch.cuda.is_available() else 'cpu')" 2>/dev/null)
bench: setup
	LD_PRELOAD=$(TCMALLOC) $(PY) benchmarks/losses.py --device $(DEVICE) --json benchmarks/results/losses_$(DEVICE).json
	$(PY) benchmarks/train.py --json benchmarks/results/train_$(DEVICE).json
	$(PY) benchmarks/throughput.py --json benchmarks/results/throughput_$(DEVICE).json

clean-book:
	rm -rf book/_build book/_generated
