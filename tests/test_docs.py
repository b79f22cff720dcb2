"""The docs cannot rot: every command they show runs (on the fixture), every entry point runs
through `mlflow run` there, the parameter reference is generated from the configs, and the
pages speak of the project, not of its history."""

import base64
import dataclasses
import html
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
import yaml

from tests.conftest import REPO
from tests.docs_commands import SERVER_LOG_DIR_ENV, shown_blocks, stop_servers

BLOCKS = shown_blocks()
RUN = [b for b in BLOCKS if b.not_run is None]
MAX_README_LINES = 250
HISTORY = re.compile(r"\b(this|an earlier|last|previous|next) session\b|\bissue\s*#?\d+|\bbefore the \w+ round\b", re.I)


def _parameters_hook():
    spec = importlib.util.spec_from_file_location("parameters_hook", REPO / "docs" / "hooks" / "parameters.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_shown_block_runs_or_says_why_not():
    assert RUN, "no runnable block found"
    for block in BLOCKS:
        assert block.not_run is None or len(block.not_run) > 5, f"{block.page}:{block.line}: give a reason"


def test_every_entry_point_runs_through_mlflow_run_in_the_docs():
    """The docs' commands, run by `test_the_docs_commands_run_on_the_fixture`, start each entry
    point of the MLproject through `mlflow run` at least once."""
    declared = set(yaml.safe_load((REPO / "MLproject").read_text())["entry_points"])
    started = {
        m.group(1)
        for block in RUN
        for command in block.commands()
        if (m := re.match(r"mlflow run \. -e (\w+)", command)) or (m := re.match(r"make (train)\b", command))
    }
    started = {"main" if s == "train" else s for s in started}
    assert declared <= started, f"no runnable `mlflow run . -e` for {sorted(declared - started)}"


def test_the_parameter_reference_is_generated_from_every_config():
    hook = _parameters_hook()
    declared = yaml.safe_load((REPO / "MLproject").read_text())["entry_points"]
    assert set(hook.ENTRY_POINTS) == set(declared)
    tables = hook.parameter_tables()
    for name, config_cls in hook.ENTRY_POINTS.items():
        section = tables.split(f"## {name}\n", 1)[1].split("\n## ", 1)[0]
        for f in dataclasses.fields(config_cls):
            assert f"`{f.name}`" in section, f"{name}.{f.name} missing from the reference"
        assert set(declared[name]["parameters"]) == {f.name for f in dataclasses.fields(config_cls)}
    page = (REPO / "docs" / "reference" / "parameters.md").read_text()
    assert "<!-- parameters -->" in page and "| `epochs` |" not in page  # generated, not kept by hand


def test_the_readme_is_a_front_page_with_the_two_commands():
    readme = (REPO / "README.md").read_text()
    assert len(readme.splitlines()) <= MAX_README_LINES
    assert "make train DATA_DIR=../shared/data" in readme and "\nmake test" in readme


@pytest.mark.parametrize("page", sorted({b.page for b in BLOCKS} | {"docs/index.md"}))
def test_pages_speak_of_the_project_not_its_history(page):
    text = (REPO / page).read_text()
    assert not HISTORY.findall(text), HISTORY.findall(text)


@pytest.mark.e2e
def test_the_docs_commands_run_on_the_fixture(tmp_path):
    """Each runnable block as written, in reading order, in a copy of the repository with its
    own tracking store; `mlflow`, `latent-models` and `make` run the real command with the
    tiny settings (tests/docs_commands.py). A block shown twice (README and the overview) runs once."""
    work = tmp_path / "repo"
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=REPO, capture_output=True, text=True)
    for name in files.stdout.splitlines():
        if (REPO / name).is_file():
            (work / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, work / name)
    shims = tmp_path / "bin"
    shims.mkdir()
    for tool in ("mlflow", "latent-models", "make"):
        (shims / tool).write_text(f'#!/bin/sh\nexec "{sys.executable}" -m tests.docs_commands {tool} "$@"\n')
        (shims / tool).chmod(0o755)
    servers = tmp_path / "servers"
    servers.mkdir()
    path = os.pathsep.join([str(shims), str(Path(sys.executable).parent), os.environ["PATH"]])  # then the venv's python
    env = dict(os.environ, PATH=path, PYTHONPATH=str(work))
    store = f"sqlite:///{work / 'mlflow.db'}"  # the registry too: an earlier test's may linger in the environment
    env.update(MLFLOW_TRACKING_URI=store, MLFLOW_REGISTRY_URI=store, **{SERVER_LOG_DIR_ENV: str(servers)})
    for key in ("MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_ID", "MLFLOW_EXPERIMENT_NAME"):
        env.pop(key, None)
    done, outputs = set(), {}
    try:
        for block in RUN:
            if block.text in done:
                continue
            done.add(block.text)
            started = time.perf_counter()
            proc = subprocess.run(
                ["bash", "-euo", "pipefail", "-c", block.text],
                cwd=work,
                env=env,
                capture_output=True,
                text=True,
                timeout=900,
            )
            assert proc.returncode == 0, (
                f"{block.page}:{block.line} failed:\n{block.text}\n--- output ---\n"
                f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
            )
            print(f"{block.page}:{block.line}: {time.perf_counter() - started:.1f} s")  # where the time goes
            outputs[block.text] = proc.stdout
            if "make train" in block.text:
                _promote_first_versions(env, work)
            if "PIP_EXTRA_INDEX_URL" in block.text:  # after deploy.md builds the CPU-only Dockerfile
                _check_serving_image(work / "serving-image")
        _check_training_runs(store, outputs)
    finally:
        stop_servers(servers)


def _promote_first_versions(env, work):
    """One epoch on the fixture need not beat doing nothing, so `make train`'s versions may not
    become champion; the serving pages need one: version 1 of each is promoted by hand, with the
    documented command."""
    for name in ("latent-denoiser", "latent-vae"):
        subprocess.run(
            ["latent-models", "promote", "--registered_model_name", name, "--version", "1"],
            cwd=work,
            env=env,
            check=True,
            capture_output=True,
        )


def _check_serving_image(folder):
    """What docs/deploy.md says of the generated image: pip is pointed at the CPU index before it
    installs the version's requirements, which pin torch as trained and hold nothing else."""
    from packaging.requirements import Requirement

    dockerfile = (folder / "Dockerfile").read_text()
    cpu_index = dockerfile.index("ENV PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu")
    ours = dockerfile.index("RUN pip install --no-deps /tmp/latent_models-*.whl")
    assert max(cpu_index, ours) < dockerfile.index("_install_pyfunc_deps") < dockerfile.index("ENTRYPOINT")
    (wheel,) = folder.glob("latent_models-*.whl")  # the loader a sealed model names, installed in the image
    assert "latent_models_seal/__init__.py" in zipfile.ZipFile(wheel).namelist()
    assert (
        yaml.safe_load(next(folder.glob("model_dir/**/MLmodel")).read_text())["flavors"]["python_function"][
            "loader_module"
        ]
        == "latent_models_seal"
    )
    (requirements,) = folder.glob("model_dir/**/requirements.txt")
    pins = {r.name: str(r.specifier) for r in map(Requirement, requirements.read_text().split())}
    assert set(pins) == {"torch", "torchvision", "mlflow", "pillow", "numpy", "pandas"}
    import torch

    assert pins["torch"] == f"=={torch.__version__.split('+')[0]}"


# --- what the docs' training runs logged ("What a run logs") -------------------------------------

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
RUN_LOGS = {  # per model: (per-epoch metrics, figures, final metrics)
    "denoiser": (
        ["train_loss", "val_loss", "val_psnr", "val_ssim"],
        ["loss_curves.png", "denoising_val.png", "denoising_test.png", "psnr_vs_noise_level.png",
         "iterative_reconstruction.png"],
        ["test_psnr", "test_ssim", "test_mse", "test_psnr_noisy"],
    ),
    "vae": (
        ["train_loss", "val_neg_elbo", "val_recon", "val_kl", "val_active_units"],
        ["loss_curves.png", "reconstructions.png", "samples.png", "interpolation.png", "latent_map.png"],
        ["test_neg_elbo", "test_iw_nll"],
    ),
}  # fmt: skip


def _check_training_runs(uri: str, outputs: dict[str, str]) -> None:
    """The `mlflow run . -e ae` and `-e vae` runs the docs started: per-epoch metrics, figures, the
    report (every figure embedded, a meaning for every metric), datasets, and a registered version
    tagged with what it was trained on; and `mlflow models predict` answered in the form it was asked."""
    import mlflow
    from mlflow.tracking import MlflowClient

    from latent_models.evaluation.report import metric_meanings

    client = MlflowClient(uri, registry_uri=uri)
    for experiment, kind in (("latent-models-ae", "denoiser"), ("latent-models-vae", "vae")):
        runs = client.search_runs([client.get_experiment_by_name(experiment).experiment_id])
        assert runs and all(r.info.status == "FINISHED" for r in runs)
        for run in runs:
            per_epoch, figures, final = RUN_LOGS[kind]
            epochs = int(run.data.params["epochs"])
            for name in per_epoch:
                assert sorted(m.step for m in client.get_metric_history(run.info.run_id, name)) == list(range(epochs))
            assert set(final) <= set(run.data.metrics)
            local = Path(client.download_artifacts(run.info.run_id, "figures"))
            for fig in figures:
                data = (local / fig).read_bytes()
                assert data[:8] == PNG_SIGNATURE and len(data) > 5000, fig
            report = Path(client.download_artifacts(run.info.run_id, "report.html")).read_text(encoding="utf-8")
            for png in sorted(local.iterdir()):
                assert f"base64,{base64.b64encode(png.read_bytes()).decode()}" in report, png.name
            assert html.escape(run.info.run_name) in report
            ours = {k for k in run.data.metrics if not k.startswith("system/")}  # MLflow's system metrics: its own
            assert ours <= set(metric_meanings(kind)), ours - set(metric_meanings(kind))
            assert run.data.tags["dataset_digest"] and run.data.tags["model_type"] == kind
            assert {i.dataset.name for i in run.inputs.dataset_inputs} == {"mnist-train", "mnist-val", "mnist-test"}
            (version,) = client.search_model_versions(f"run_id = '{run.info.run_id}'")
            metric = "test_psnr" if kind == "denoiser" else "test_neg_elbo"
            assert float(version.tags[metric]) == pytest.approx(run.data.metrics[metric], abs=1e-3)
    mlflow.set_tracking_uri(None)
    # serving.md's `mlflow models predict` (a fresh process each): floats in, floats out; PNGs in, PNGs out.
    (printed,) = [out for text, out in outputs.items() if "mlflow models predict" in text]
    floats, pngs = _json_objects(printed[printed.index("{") :])
    images = np.asarray(floats["predictions"], dtype=np.float32)
    assert images.shape == (2, 28, 28) and 0.0 <= images.min() <= images.max() <= 1.0
    assert [set(row) for row in pngs["predictions"]] == [{"image"}] * 2
    assert all(base64.b64decode(row["image"])[:8] == PNG_SIGNATURE for row in pngs["predictions"])


def _json_objects(text: str) -> list:
    """The JSON values printed one after another (`mlflow models predict` ends none with a newline)."""
    decoder, values, at = json.JSONDecoder(), [], 0
    while at < len(text.rstrip()):
        value, at = decoder.raw_decode(text, at)
        values.append(value)
        at += len(text[at:]) - len(text[at:].lstrip())
    return values
