# Two commands for a newcomer: `make train` (install, train both models, register them)
# and `make test`. DATA_DIR is the dataset root (torchvision layout); here: ../shared/data.
VENV ?= .venv
PYTHON ?= python3
DATA_DIR ?= $(or $(LATENT_MODELS_DATA_DIR),data)
EXPERIMENT ?= latent-models

.PHONY: install train test test-fast lint format benchmark
install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install torch==2.14.1 torchvision==0.29.1
	$(VENV)/bin/python -m pip install -e ".[test]"
	touch $@

train: install
	. $(VENV)/bin/activate && mlflow run . -e main --env-manager local \
		--experiment-name $(EXPERIMENT) -P data_dir=$(abspath $(DATA_DIR))

test: install
	$(VENV)/bin/python -m pytest

test-fast: install  # everything but the end-to-end tier (servers, `mlflow run`, UI, DDP)
	$(VENV)/bin/python -m pytest -m "not e2e"

lint: install  # what CI checks: ruff's lint rules and formatting (pyproject.toml [tool.ruff])
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: install  # fix what can be fixed: import order, then formatting
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

benchmark: install
	$(VENV)/bin/python benchmarks/training.py --data_dir $(abspath $(DATA_DIR))

# A folder of wheels for an offline GPU host that has Python and torch (benchmarks/gpu_check.sh):
# this project's wheel and its dependencies for Python $(PY) on $(PLATFORM), without torch,
# torchvision and the CUDA stack (the host's torch is used). TORCHVISION=<version matching the
# host's torch> adds that torchvision wheel (no deps) for a host without one.
PY ?= 3.12
PLATFORM ?= manylinux_2_28_x86_64
WHEELHOUSE ?= wheelhouse
TORCHVISION ?=
# pip matches --platform tags exactly: a manylinux_2_28 host also takes manylinux_2_27 ... 2_5 wheels.
PLATFORM_FLAGS = $(shell $(PYTHON) -c "import re; p = '$(PLATFORM)'; m = re.fullmatch(r'manylinux_2_(\d+)_(\w+)', p); \
	t = [f'manylinux_2_{k}_{m[2]}' for k in range(int(m[1]), 4, -1)] + [f'manylinux{v}_{m[2]}' for v in ('2014', '2010', '1')] \
	if m else [p]; print(' '.join('--platform ' + x for x in t))")

.PHONY: wheels
wheels: install
	rm -rf $(WHEELHOUSE) && mkdir -p $(WHEELHOUSE)
	$(VENV)/bin/python -m pip wheel -q --no-deps -w $(WHEELHOUSE) .
	$(VENV)/bin/python -c "import tomllib; p = tomllib.load(open('pyproject.toml', 'rb'))['project']; \
	print('\n'.join(d for d in p['dependencies'] + p['optional-dependencies']['test'] \
	if not d.startswith(('torch', 'nvidia'))))" > $(WHEELHOUSE)/requirements.txt
	$(VENV)/bin/python -m pip download -q --only-binary=:all: --python-version $(PY) $(PLATFORM_FLAGS) \
		--dest $(WHEELHOUSE) -r $(WHEELHOUSE)/requirements.txt
	$(if $(TORCHVISION),$(VENV)/bin/python -m pip download -q --only-binary=:all: --no-deps --python-version $(PY) \
		$(PLATFORM_FLAGS) --dest $(WHEELHOUSE) torchvision==$(TORCHVISION))
	@du -sh $(WHEELHOUSE); ls $(WHEELHOUSE) | wc -l
