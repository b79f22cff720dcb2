# Two commands for a newcomer: `make train` (install, train both models, register them)
# and `make test`. DATA_DIR is the dataset root (torchvision layout); here: ../shared/data.
VENV ?= .venv
PYTHON ?= python3
DATA_DIR ?= $(or $(LATENT_MODELS_DATA_DIR),data)
EXPERIMENT ?= latent-models

# TORCH_INDEX_URL: where torch comes from; empty is PyPI (its Linux build bundles CUDA, about 4 GB
# more). A machine without an NVIDIA GPU can take the CPU-only build (docs/install.md):
#   make train TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
TORCH_INDEX_URL ?=

.PHONY: install install-test train test test-fast lint format benchmark docs
install: $(VENV)/.installed  # what training, evaluating and serving need: the runtime dependencies only
install-test: $(VENV)/.installed-test  # plus the test extra (pytest, pyspark, ruff, the docs tools, bm3d, ...)

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install torch==2.14.1 torchvision==0.29.1 $(if $(TORCH_INDEX_URL),--index-url $(TORCH_INDEX_URL))
	$(VENV)/bin/python -m pip install -e .
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed
	$(VENV)/bin/python -m pip install -e ".[test]"
	touch $@

train: install
	. $(VENV)/bin/activate && mlflow run . -e main --env-manager local \
		--experiment-name $(EXPERIMENT) -P data_dir=$(abspath $(DATA_DIR))

# One pytest worker per core (pytest-xdist), each test file on one worker: much of the suite waits
# on processes and servers starting, which the other worker's tests fill.
PYTEST_WORKERS ?= auto

test: install-test
	$(VENV)/bin/python -m pytest -n $(PYTEST_WORKERS) --dist loadfile

test-fast: install-test  # everything but the end-to-end tier (servers, `mlflow run`, UI, DDP)
	$(VENV)/bin/python -m pytest -n $(PYTEST_WORKERS) --dist loadfile -m "not e2e"

lint: install-test  # what CI checks: ruff's lint rules and formatting (pyproject.toml [tool.ruff]), the layers (.importlinter)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports

docs: install-test  # the documentation site, as CI builds it: broken links and anchors fail (site/ is ignored)
	$(VENV)/bin/mkdocs build --strict

format: install-test  # fix what can be fixed: import order, then formatting
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

benchmark: install
	$(VENV)/bin/python benchmarks/training.py --data_dir $(abspath $(DATA_DIR))

# A folder of wheels for an offline GPU host that has Python, torch and torchvision (benchmarks/gpu_check.sh):
# this project's wheel and what the check's steps import, for Python $(PY) on $(PLATFORM); no torch,
# torchvision, CUDA, numpy or pillow (the host's), mlflow-skinny for mlflow (benchmarks/wheelhouse.py says
# what is left out and why). TORCHVISION=<version matching the host's torch>, for a host without
# torchvision, adds that torchvision wheel (no deps) and numpy and pillow. HOST_HAS=scipy,pandas,... leaves out
# the wheels of packages the host already has (pip still checks their versions there).
PY ?= 3.12
PLATFORM ?= manylinux_2_28_x86_64
WHEELHOUSE ?= wheelhouse
TORCHVISION ?=
HOST_HAS ?=

.PHONY: wheels
wheels: install
	rm -rf $(WHEELHOUSE) && mkdir -p $(WHEELHOUSE)
	$(VENV)/bin/python -m pip wheel -q --no-deps -w $(WHEELHOUSE) .
	$(VENV)/bin/python benchmarks/wheelhouse.py --dest $(WHEELHOUSE) --python_version $(PY) --platform $(PLATFORM) \
		$(if $(TORCHVISION),--torchvision $(TORCHVISION)) $(if $(HOST_HAS),--host_has $(HOST_HAS))
	@du -sh $(WHEELHOUSE); ls $(WHEELHOUSE)/*.whl | wc -l
