"""A logged model's folder carries a SHA-256 manifest, and its load checks it before any of the
model's code runs (docs/write-once.md); the team server's side is in tests/test_team_server.py."""

import hashlib
import re
import shutil

import mlflow
import numpy as np
import pytest
import torch
import yaml

from latent_models.kinds.denoiser.config import DenoiserConfig
from latent_models.models import build_model
from latent_models.serving.logged_model import model_saver
from latent_models.tracking import log_model
from latent_models_seal import LOADER, MANIFEST_KEY, SEAL_TAG, ModelRefused


def test_a_copied_folder_is_checked_before_its_code_runs(tracking, tmp_path, monkeypatch, capfd):
    torch.manual_seed(0)
    model = build_model(DenoiserConfig(arch="unet", latent_dim=8, width=4)).eval()
    x = np.random.default_rng(0).random((2, 28, 28), dtype=np.float32)
    with mlflow.start_run():
        ref = log_model("denoiser", model_saver(model, x), 0, "denoiser")
    folder = tmp_path / "copy"
    mlflow.artifacts.download_artifacts(ref.model_uri, dst_path=str(folder))
    meta = yaml.safe_load((folder / "MLmodel").read_text())
    conf = meta["flavors"]["python_function"]
    assert conf["loader_module"] == LOADER and "code" not in conf  # MLflow puts no code/ on sys.path first
    manifest = meta["metadata"][MANIFEST_KEY]["sha256"]
    assert {"denoiser.py", "artifacts/weights.pt", "code/latent_models/serving/pyfunc.py"} <= set(manifest)
    seal = hashlib.sha256((folder / "MLmodel").read_bytes()).hexdigest()
    assert ref.seal == seal == mlflow.get_logged_model(ref.model_id).tags[SEAL_TAG]

    # Python would run a planted bytecode cache instead of the checked source: it is removed first.
    planted = folder / "code" / "latent_models" / "__pycache__" / "__init__.cpython-311.pyc"
    planted.parent.mkdir()
    planted.write_bytes(b"not bytecode")
    assert mlflow.pyfunc.load_model(str(folder)).predict(x).shape == (2, 28, 28)
    assert not planted.exists()

    def refused(change, message: str) -> None:
        copy = tmp_path / f"tampered-{len(list(tmp_path.glob('tampered-*')))}"
        shutil.copytree(folder, copy)
        change(copy)
        with pytest.raises(ModelRefused, match=f"^{re.escape(f'refused to load the model at {copy}: {message}')}"):
            mlflow.pyfunc.load_model(str(copy))

    refused(
        lambda c: (c / "code" / "latent_models" / "extra.py").write_text("x = 1\n"),
        "code/latent_models/extra.py is not",
    )
    refused(lambda c: (c / "artifacts" / "config.json").unlink(), "artifacts/config.json is missing")

    def mlflow_loader(copy):  # the MLmodel rewritten to skip the check: refused where this package is imported
        text = (copy / "MLmodel").read_text()
        text = text.replace(f"loader_module: {LOADER}", "loader_module: mlflow.pyfunc.loaders.code_model")
        (copy / "MLmodel").write_text(text.replace("latent_models_code: code", "code: code"))

    refused(mlflow_loader, "MLmodel holds a manifest but names loader 'mlflow.pyfunc.loaders.code_model'")

    def no_manifest(copy):  # ... and its manifest dropped too: the tracking server still knows the seal
        meta = yaml.safe_load((copy / "MLmodel").read_text())
        meta["flavors"]["python_function"]["loader_module"] = "mlflow.pyfunc.loaders.code_model"
        del meta["metadata"][MANIFEST_KEY]
        (copy / "MLmodel").write_text(yaml.safe_dump(meta))

    refused(no_manifest, f"logged model {ref.model_id} is sealed, but this MLmodel names loader")

    # With no tracking server to ask, the folder's own manifest is checked, and one line says so.
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    mlflow.set_tracking_uri(None)
    capfd.readouterr()
    refused(lambda c: (c / "denoiser.py").write_text("raise SystemExit('ran')\n"), "denoiser.py has SHA-256")
    assert capfd.readouterr().err.count("no tracking server to check its MLmodel against") == 1


@pytest.mark.e2e
def test_mlflow_models_serve_refuses_a_changed_folder(tmp_path):
    """`mlflow models serve` loads through the same check: a changed weights file stops it before
    the model's code runs, the one line at the end of its output."""
    import subprocess

    from mlflow.models import Model

    from tests.helpers.servers import free_port, model_serve_command, model_server_env

    model = build_model(DenoiserConfig(arch="unet", latent_dim=8, width=4)).eval()
    folder = tmp_path / "model"
    model_saver(model, np.zeros((1, 28, 28), dtype=np.float32))(str(folder), Model())
    with open(folder / "artifacts" / "weights.pt", "ab") as f:
        f.write(b"\0")
    done = subprocess.run(
        model_serve_command(str(folder), free_port()),
        env=model_server_env(),  # no tracking store: a folder, not a registered model
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode != 0
    refusal = f"refused to load the model at {folder}: artifacts/weights.pt has SHA-256 "
    assert any(refusal in line for line in done.stderr.splitlines()), done.stderr[-3000:]
