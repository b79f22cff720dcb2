# Two commands for a newcomer: `make train` (install, train both models, register them)
# and `make test`. DATA_DIR is the dataset root (torchvision layout); here: ../shared/data.
VENV ?= .venv
PYTHON ?= python3
DATA_DIR ?= $(or $(LATENT_MODELS_DATA_DIR),data)
EXPERIMENT ?= latent-models

.PHONY: install train test benchmark
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

benchmark: install
	$(VENV)/bin/python benchmarks/training.py --data_dir $(abspath $(DATA_DIR))
