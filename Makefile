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

# The reference environment: requirements-lock.txt (exact versions, CPython 3.11 on Linux x86_64). Elsewhere
# setup falls back to pyproject.toml's ranges and says so. `make lock` regenerates the lock (needs uv).
LOCK       := requirements-lock.txt
TORCH_PIN  := torch==2.14.1 torchvision==0.29.1
# the other torch release the goldens are checked against (make test-alt-torch)
ALT_TORCH  ?= torch==2.15.0 torchvision==0.29.2
ALT_VENV   ?= .venv-alt
LOCKABLE   := $(shell $(PYTHON3) -c "import platform, sys; print(int(platform.machine() == 'x86_64' and sys.platform == 'linux' and sys.version_info[:2] == (3, 11)))")

.PHONY: all setup results book test test-fast test-foreign-cpu goldens test-alt-torch bench gpu gpu-dry clean-book lock
all: results book

setup: $(VENV)/.installed
$(VENV)/.installed: pyproject.toml $(LOCK)
	$(PYTHON3) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
ifeq ($(LOCKABLE),1)
	$(PY) -m pip install --quiet -r $(LOCK)
	$(PY) -m pip install --quiet --no-deps -e .
else
	@echo "setup: not CPython 3.11 on Linux x86_64, so $(LOCK) does not apply; installing pyproject.toml's ranges"
	$(PY) -m pip install --quiet -e '.[notebooks,dev,examples]'
endif
	$(PY) -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (softgrad)" >/dev/null
	$(PY) -c "import torch, torchvision; print('torch', torch.__version__, 'torchvision', torchvision.__version__)"
	touch $@

lock:
	printf '%s\n' $(TORCH_PIN) > .lock-constraints.txt
	uv pip compile pyproject.toml --extra notebooks --extra dev --extra examples -c .lock-constraints.txt --python-version 3.11 \
	  --python-platform x86_64-manylinux_2_28 --custom-compile-command "make lock" -o $(LOCK); \
	  rc=$$?; rm -f .lock-constraints.txt; exit $$rc

# The nbval goldens under the other torch release (a second venv: the lock with torch swapped). Where that
# release cannot be installed (no registry access, a pip cap), it says so plainly and exits 0 without testing.
test-alt-torch: setup
	@$(PY) -m softgrad.pipeline alt-torch --venv $(ALT_VENV) --torch "$(ALT_TORCH)" --lock $(LOCK)

results: setup
	$(PY) -m softgrad.pipeline notebooks --profile $(PROFILE)

book: setup
	$(PY) -m softgrad.pipeline book --profile $(PROFILE)

test: setup
	$(PY) -m pytest -n 2 --dist loadfile tests
	$(PY) -m softgrad.pipeline nbval --profile ci

test-fast: setup
	$(PY) -m pytest -n 2 --dist loadfile tests

# The nbval goldens as on other machines: another SIMD dispatch (AVX2 kernels of ATen, oneDNN, MKL, NumPy)
# and another thread count. CI runs this after `make test`.
test-foreign-cpu: setup
	$(PY) -m softgrad.pipeline nbval --profile ci --perturb avx2
	$(PY) -m softgrad.pipeline nbval --profile ci --perturb threads

# Before committing regenerated goldens: which compared outputs move under each perturbation, and by how much.
goldens: setup
	$(PY) -m softgrad.goldens

DEVICE := $(shell $(PY) -c "import torch; print('cuda' if torch.cuda.is_available() else 'cpu')" 2>/dev/null)
bench: setup
	$(PY) benchmarks/losses.py --device $(DEVICE) --allocators glibc tcmalloc --compiled --json benchmarks/results/losses_$(DEVICE).json
	$(PY) benchmarks/train.py --json benchmarks/results/train_$(DEVICE).json
	$(PY) benchmarks/throughput.py --json benchmarks/results/throughput_$(DEVICE).json

# The prepared device script (softgrad.gpu): tests, loss/trainer benchmarks, the paper parameter files on synthetic
# CIFAR-shaped data and chapter 06's protocol at N = 512 with the stacked engine, <= 10 minutes on one H100, no
# internet. gpu-dry runs the same steps on the CPU at tiny sizes (CI runs it).
gpu: setup
	$(PY) -m softgrad.gpu

gpu-dry: setup
	$(PY) -m softgrad.gpu --dry-run

clean-book:
	rm -rf book/_build book/notebooks book/_config.built.yml
