"""Two registered versions whose packaged `latent_models` differs, loaded in one process (as
`evaluate` or a notebook comparing them does): each runs the code it shipped."""

import shutil
import sys

import mlflow
import numpy as np
import pytest
import torch

import latent_models
from latent_models.kinds.denoiser.config import DenoiserConfig
from latent_models.models import build_model
from latent_models.serving import logged_model
from latent_models.serving.isolation import source_digest
from latent_models.serving.logged_model import PACKAGE_DIR, model_saver
from latent_models.tracking import log_model


@pytest.fixture
def changed_package(tmp_path):
    """A copy of the package whose denoiser answers all zeros: visibly other code."""
    copy = tmp_path / "other" / "latent_models"
    shutil.copytree(PACKAGE_DIR, copy, ignore=shutil.ignore_patterns("__pycache__"))
    pyfunc = copy / "kinds" / "denoiser" / "serving.py"
    text = pyfunc.read_text()
    old = "        x = x.contiguous(memory_format=torch.channels_last)\n"
    assert old in text
    pyfunc.write_text(text.replace(old, "        return torch.zeros_like(x)  # the other version's code\n"))
    assert source_digest(copy) != source_digest(PACKAGE_DIR)
    return copy


def test_each_loaded_version_runs_its_own_code(tracking, changed_package, monkeypatch):
    torch.manual_seed(0)
    model = build_model(DenoiserConfig(arch="unet", latent_dim=8, width=4)).eval()
    x = np.random.default_rng(0).random((3, 28, 28), dtype=np.float32)
    with mlflow.start_run():
        mlflow.register_model(log_model("denoiser", model_saver(model, x[:2]), 0, "denoiser").model_uri, "two")
        with monkeypatch.context() as m:
            m.setattr(logged_model, "PACKAGE_DIR", changed_package)  # version 2 ships the changed copy
            mlflow.register_model(log_model("denoiser", model_saver(model, x[:2]), 0, "denoiser").model_uri, "two")
    before = dict(sys.modules)
    with torch.inference_mode():
        expected = model(torch.from_numpy(x)[:, None])[:, 0].numpy()

    second = mlflow.pyfunc.load_model("models:/two/2")  # loaded first: the changed code
    first = mlflow.pyfunc.load_model("models:/two/1")
    again = mlflow.pyfunc.load_model("models:/two/2")
    assert np.allclose(first.predict(x), expected, atol=1e-6)
    assert np.array_equal(second.predict(x), np.zeros_like(x))
    assert np.array_equal(again.predict(x), np.zeros_like(x))
    assert np.allclose(first.predict(x), expected, atol=1e-6)  # still its own, after the others
    # The rest of the process keeps the latent_models it had imported.
    assert sys.modules["latent_models"] is latent_models
    assert all(sys.modules.get(name) is module for name, module in before.items() if name.startswith("latent_models"))
    # Version 2's wrapper came from its own folder; version 1 (the same code as this checkout)
    # uses the package already imported.
    assert type(second.unwrap_python_model())._denoise.__code__.co_filename.endswith(
        "/code/latent_models/kinds/denoiser/serving.py"
    )
    assert type(first.unwrap_python_model()) is sys.modules["latent_models.kinds.denoiser.serving"].DenoiserPyfunc
