"""A logged model's folder carries a SHA-256 manifest, and its load checks it before any of the
model's code runs (docs/write-once.md); the team server's side is in tests/test_team_server.py."""

import hashlib
import importlib.metadata
import os
import re
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import mlflow
import numpy as np
import pytest
import requests
import torch
import yaml
from mlflow.models import Model

from latent_models.kinds.denoiser.config import DenoiserConfig
from latent_models.models import build_model
from latent_models.serving.logged_model import model_saver
from latent_models.tracking import log_model
from latent_models_seal import DELEGATE, LOADER, MANIFEST_KEY, SEAL_TAG, ModelRefused


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


OLD_MODEL = Path(__file__).parent / "fixtures" / "models" / "denoiser-3deb76c.tar.gz"  # logged before write-once
PLUGIN = "latent_models_seal.mlflow_plugin:not_an_artifact_store"
OLD_WARNING = "latent-models: warning: {}: logged before write-once (no manifest): its files are not checked"


def _old_model(tmp_path: Path) -> Path:
    with tarfile.open(OLD_MODEL) as archive:
        archive.extractall(tmp_path, filter="data")
    return tmp_path / "denoiser-3deb76c"


def _plugin_installed() -> None:
    """The warning in a process with nothing of latent-models rests on pyproject.toml's entry point,
    which only an install writes: a checkout installed before it needs `pip install -e .` again."""
    group = importlib.metadata.entry_points(group="mlflow.artifact_repository")
    assert PLUGIN in [ep.value for ep in group], (
        f"entry point {PLUGIN} (group mlflow.artifact_repository, pyproject.toml) is not installed "
        "in this environment: run `pip install -e .` (make install) again"
    )


def _clean_env() -> dict:
    env = dict(os.environ, PATH=str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", ""))
    for key in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", "MLFLOW_RUN_ID"):
        env.pop(key, None)
    return env


def test_a_model_logged_before_write_once_warns_where_only_mlflow_is_imported(tmp_path):
    """A bare `mlflow.pyfunc.load_model` in a process that imports nothing of latent-models: MLflow
    itself imports latent_models_seal (the entry point), so the old model prints its one warning
    and a sealed folder rewritten to MLflow's loader is refused; a model that is not latent-models'
    (models from code, a `code` folder) loads without a word."""
    _plugin_installed()
    old = _old_model(tmp_path)
    plain = tmp_path / "plain"
    (tmp_path / "helpers").mkdir()  # a `code` folder, as MLflow writes it, with no latent_models in it
    (tmp_path / "helpers" / "helper.py").write_text("SCALE = 2\n")
    script = tmp_path / "plain_model.py"
    script.write_text(
        "import mlflow\n\n\n"
        "class Plain(mlflow.pyfunc.PythonModel):\n"
        "    def predict(self, context, model_input, params=None):\n"
        "        return model_input\n\n\n"
        "mlflow.models.set_model(Plain())\n"
    )
    mlflow.pyfunc.save_model(str(plain), python_model=str(script), code_paths=[str(tmp_path / "helpers")])
    # A sealed folder whose MLmodel was rewritten to MLflow's own loader: refused there too.
    rewritten = tmp_path / "rewritten"
    model_saver(
        build_model(DenoiserConfig(arch="unet", latent_dim=8, width=4)).eval(), np.zeros((1, 28, 28), np.float32)
    )(str(rewritten), Model())
    text = (rewritten / "MLmodel").read_text().replace(f"loader_module: {LOADER}", "loader_module: " + DELEGATE)
    (rewritten / "MLmodel").write_text(text.replace("latent_models_code: code", "code: code"))
    loads = (
        "import sys, mlflow\n"
        "print('imported', sorted(m for m in sys.modules if m.startswith('latent_models')), file=sys.stderr)\n"
        "for path in sys.argv[1:]:\n"
        "    print('loading', path, file=sys.stderr, flush=True)\n"
        "    try:\n"
        "        mlflow.pyfunc.load_model(path)\n"
        "    except mlflow.MlflowException as exc:\n"
        "        print('refused:', type(exc).__name__, exc.message, file=sys.stderr, flush=True)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", loads, str(plain), str(old), str(rewritten)],
        env=_clean_env(),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    prefixes = ("imported", "loading", "latent-models:", "refused:")
    lines = [line for line in done.stderr.splitlines() if line.startswith(prefixes)]
    assert lines == [
        "imported ['latent_models_seal', 'latent_models_seal.mlflow_plugin']",  # by MLflow, inside `import mlflow`
        f"loading {plain}",
        f"loading {old}",
        OLD_WARNING.format(old),
        f"loading {rewritten}",
        f"refused: ModelRefused refused to load the model at {rewritten}: MLmodel holds a manifest but names "
        f"loader '{DELEGATE}', not {LOADER}",
    ], done.stderr[-3000:]


@pytest.mark.e2e
def test_mlflow_models_serve_of_a_model_logged_before_write_once_warns_once(tmp_path):
    """`mlflow models serve --env-manager local` of the old model folder, nothing of latent-models
    named: its scoring-server process prints the one warning, and serves."""
    from tests.helpers.servers import ServerProcess, free_port, model_serve_command

    _plugin_installed()
    old = _old_model(tmp_path)
    port, log = free_port(), tmp_path / "serve.log"
    serve = model_serve_command(str(old), port)
    with ServerProcess(serve, port, "/ping", log, env=_clean_env(), cwd=tmp_path, name="mlflow models serve") as server:
        body = {"inputs": np.full((1, 784), 0.5, dtype=np.float32).tolist()}
        assert requests.post(f"{server.url}/invocations", json=body, timeout=60).status_code == 200
    warnings = [line for line in log.read_text().splitlines() if line.startswith("latent-models:")]
    assert warnings == [OLD_WARNING.format(old)], log.read_text()[-3000:]
