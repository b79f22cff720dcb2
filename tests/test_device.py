"""Device and precision choice: resolution, the one-line errors, mixed precision in `fit`,
resume across devices, serving's device. What needs a GPU is marked `cuda` (skipped here)."""

import dataclasses
import shutil

import mlflow
import pytest
import torch
from click.testing import CliRunner
from torch import nn

from latent_models import cli, device
from latent_models.device import DeviceError, check, resolve_device, resolve_precision
from latent_models.kinds.denoiser.config import AEConfig
from latent_models.options import with_logged_params
from latent_models.training.checkpoint import CheckpointState
from latent_models.training.loop import Checkpointing, Objective, Settings, fit, seed_everything
from tests.conftest import TINY


@pytest.fixture
def cpu_only(monkeypatch):
    """A machine with no CUDA and no MPS, whatever this one has."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)


@pytest.fixture
def one_gpu(monkeypatch):
    """A machine with one CUDA GPU (sm 7.5: no bf16) and no MPS, as torch reports it."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda d=None: "Tesla T4")
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda d=None: (7, 5))
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    monkeypatch.setattr(torch.version, "hip", None)


def test_auto_resolves_to_the_cpu_without_a_gpu(cpu_only):
    assert resolve_device("auto") == torch.device("cpu")
    assert resolve_precision("auto", torch.device("cpu")) == "fp32"  # bf16 is slower on this CPU


def test_explicit_cpu_and_bf16_on_the_cpu(cpu_only):
    assert check("cpu", "bf16") == (torch.device("cpu"), "bf16")
    assert check("CPU", "fp32") == (torch.device("cpu"), "fp32")


def test_auto_prefers_cuda_and_bf16_where_the_gpu_has_it(one_gpu, monkeypatch):
    assert resolve_device("auto") == torch.device("cuda", 0)
    assert resolve_precision("auto", torch.device("cuda", 0)) == "fp32"  # a T4 has no bf16
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda d=None: (9, 0))
    assert resolve_precision("auto", torch.device("cuda", 0)) == "bf16"
    assert resolve_precision("fp16", torch.device("cuda", 0)) == "fp16"


def test_under_torchrun_each_process_takes_its_own_gpu(one_gpu, monkeypatch):
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert resolve_device("cuda") == torch.device("cuda", 1)
    assert resolve_device("auto") == torch.device("cuda", 1)


@pytest.mark.parametrize(
    "machine, device_spec, precision, nproc, expected",
    [
        (
            "cpu_only",
            "cuda",
            "auto",
            1,
            ["device=cuda", "CUDA is not available", "only the cpu", "pass device=auto or cpu"],
        ),
        ("one_gpu", "cuda:3", "auto", 1, ["device=cuda:3", "no GPU 3", "cuda:0 (Tesla T4)", "pass device=cuda:0"]),
        ("cpu_only", "mps", "auto", 1, ["device=mps", "MPS", "only the cpu", "pass device=auto or cpu"]),
        ("cpu_only", "cpu", "fp16", 1, ["precision=fp16", "cpu", "needs a CUDA GPU", "pass precision=bf16 or fp32"]),
        ("one_gpu", "cuda", "bf16", 1, ["precision=bf16", "Tesla T4", "no bfloat16", "pass precision=fp16 or fp32"]),
        (
            "one_gpu",
            "cuda",
            "auto",
            2,
            ["nproc_per_node=2", "cuda:0 (Tesla T4)", "pass nproc_per_node=1 or device=cpu"],
        ),
        ("one_gpu", "cuda:0", "auto", 2, ["device=cuda:0 names one GPU", "pass device=cuda or auto"]),
        ("cpu_only", "gpu", "auto", 1, ["device must be one of auto, cpu, cuda, cuda:N or mps", "'gpu'"]),
        ("cpu_only", "cpu", "half", 1, ["precision must be one of auto, fp32, bf16, fp16", "'half'"]),
    ],
)
def test_bad_device_or_precision_is_one_line_naming_what_to_pass(
    request, machine, device_spec, precision, nproc, expected
):
    request.getfixturevalue(machine)
    with pytest.raises(DeviceError) as error:
        check(device_spec, precision, nproc)
    message = str(error.value)
    assert "\n" not in message
    for part in expected:
        assert part in message, message


def test_cli_refuses_a_missing_gpu_before_anything_starts(cpu_only, tracking, tmp_path):
    args = [f"--{k}={v}" for k, v in TINY.items()] + ["--device=cuda", "--register=false"]
    result = CliRunner().invoke(cli.command("ae"), args)
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: device=cuda: CUDA is not available"), result.output
    assert not (tmp_path / "mlruns").exists()
    assert mlflow.search_runs(search_all_experiments=True).empty


def test_resume_keeps_the_device_and_precision_of_the_command_line():
    cfg = AEConfig(device="cpu", precision="fp32", compile=False, resume="last")
    logged = {"device": "cuda", "precision": "bf16", "compile": "true", "noise_level": "0.3"}
    resumed = with_logged_params(cfg, logged)
    assert (resumed.device, resumed.precision, resumed.compile) == ("cpu", "fp32", False)
    assert resumed.noise_level == 0.3  # what to train still comes from the run


# --- fit: precision, compile, resume across devices -------------------------------------


class Conv(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Conv2d(1, 1, 3, padding=1)

    def forward(self, x):
        return self.net(x)


def _images():
    return torch.rand(64, 1, 8, 8, generator=torch.Generator().manual_seed(3))


def _fit(precision="fp32", epochs=2, seen=None, compile=False, **checkpointing):
    images = _images()

    def loss_fn(model, batch, generator, progress, rows=slice(None)):
        noisy = batch + 0.1 * torch.randn(batch.shape, generator=generator, device=batch.device)
        out = model(noisy)
        if seen is not None:
            seen.append(out.dtype)
        return nn.functional.mse_loss(out.float(), batch), {}

    def evaluate(model):
        with torch.no_grad():
            return {"val_loss": nn.functional.mse_loss(model(images), images).item()}

    generator = seed_everything(0)
    model = Conv()
    result = fit(
        model,
        images,
        Objective(loss_fn, evaluate, "val_loss", "min"),
        Settings(epochs=epochs, batch_size=16, lr=0.01, schedule="cosine", precision=precision, compile=compile),
        generator,
        Checkpointing(**checkpointing),
    )
    return model, result


def test_bf16_autocasts_the_forward_and_keeps_metrics_fp32():
    seen32, seen16 = [], []
    _, fp32 = _fit("fp32", seen=seen32)
    _, bf16 = _fit("bf16", seen=seen16)
    assert set(seen32) == {torch.float32} and set(seen16) == {torch.bfloat16}
    assert fp32.history != bf16.history  # really a different computation
    for metrics in bf16.history:
        assert all(isinstance(v, float) and v == v for v in metrics.values())
    assert abs(bf16.history[-1]["val_loss"] - fp32.history[-1]["val_loss"]) < 0.01


@pytest.mark.skipif(
    shutil.which("cc") is None and shutil.which("gcc") is None, reason="torch.compile needs a C compiler"
)
def test_compile_trains_to_the_same_result():
    eager_model, eager = _fit()
    compiled_model, compiled = _fit(compile=True)
    assert len(compiled.history) == 2
    for a, b in zip(eager.history, compiled.history):
        assert a["val_loss"] == pytest.approx(b["val_loss"], rel=1e-3)
    assert "_orig_mod" not in "".join(compiled_model.state_dict())  # the model itself is not wrapped


def _crash_after_the_first_epoch(path):
    """A 3-epoch fit killed after its first epoch, its checkpoint at `path`."""

    def crash(epoch, metrics):
        if epoch == 0:
            raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        _fit(epochs=3, path=path, on_epoch=crash)


def test_resume_from_a_checkpoint_of_another_device_notes_it_and_finishes(tmp_path, capsys):
    path = tmp_path / "last.pt"
    _crash_after_the_first_epoch(path)
    saved = CheckpointState.load(path)
    assert saved.device == "cpu"
    # As written on a GPU: another device, and a CUDA generator's (16-byte) state.
    saved.device, saved.generator = "cuda:0", torch.zeros(16, dtype=torch.uint8)
    saved.save(path)
    capsys.readouterr()
    model, resumed = _fit(epochs=3, path=path, resume=True)
    out = capsys.readouterr()
    notes = [line for line in (out.out + out.err).splitlines() if line.startswith("note:")]
    assert len(notes) == 1 and "written on cuda:0, resuming on cpu" in notes[0], notes
    assert len(resumed.history) == 3 and resumed.history[0] == saved.history[0]
    _, uninterrupted = _fit(epochs=3)
    assert resumed.history[1:] != uninterrupted.history[1:]  # a new stream, as the note says


def test_resume_on_the_same_device_prints_no_note(tmp_path, capsys):
    path = tmp_path / "last.pt"
    _crash_after_the_first_epoch(path)
    capsys.readouterr()
    _, resumed = _fit(epochs=3, path=path, resume=True)
    out = capsys.readouterr()
    assert "note:" not in out.out + out.err
    assert resumed.history == _fit(epochs=3)[1].history


# --- pipelines and serving ----------------------------------------------------------------


def test_tiny_bf16_ae_run_logs_device_params_and_tags(tracking):
    from latent_models.kinds.denoiser.recipe import run_ae

    result = run_ae(AEConfig(**TINY, register=False, precision="bf16"))
    run = mlflow.get_run(result["run_id"])
    assert run.data.params["device"] == "auto" and run.data.params["precision"] == "bf16"
    assert run.data.params["compile"] == "false"
    assert run.data.tags["device_name"] == ("cpu" if not torch.cuda.is_available() else torch.cuda.get_device_name(0))
    assert run.data.tags["precision_resolved"] == "bf16"
    assert run.data.tags["device_resolved"] == ("cpu" if not torch.cuda.is_available() else "cuda:0")
    assert run.data.tags["torch_version"] == torch.__version__
    assert run.data.tags["cuda_version"] == (torch.version.cuda or "none")
    assert 5 < result["test_psnr"] < 60


def test_serving_device_comes_from_the_environment(cpu_only, monkeypatch):
    monkeypatch.delenv(device.ENV_VAR, raising=False)
    assert device.serving_device() == torch.device("cpu")
    monkeypatch.setenv(device.ENV_VAR, "cpu")
    assert device.serving_device() == torch.device("cpu")
    monkeypatch.setenv(device.ENV_VAR, "cuda")
    with pytest.raises(DeviceError, match="device=cuda"):
        device.serving_device()


def test_batched_moves_slices_to_the_modules_device_and_returns_cpu():
    from latent_models.evaluation.scores import _device_of, batched

    model = Conv()
    assert _device_of(model) == torch.device("cpu") and _device_of(model.forward) == torch.device("cpu")
    assert _device_of(lambda x: x) is None
    seen = []

    def fn(x):
        seen.append(x.device)
        return torch.full(x.shape, 2.0)  # (a meta tensor has no data to bring back)

    out = batched(fn, torch.ones(7, 2), batch_size=3, device=torch.device("meta"))
    assert seen == [torch.device("meta")] * 3 and out.device == torch.device("cpu") and out.shape == (7, 2)


# --- on a CUDA GPU (skipped without one) ----------------------------------------------------


@pytest.mark.cuda
def test_cuda_bf16_and_fp16_fit_and_resume_on_the_cpu(tmp_path):
    gpu = torch.device("cuda", 0)
    images = _images()

    def loss_fn(model, batch, generator, progress, rows=slice(None)):
        assert batch.device.type == "cuda" and generator.device.type == "cuda"
        noisy = batch + 0.1 * torch.randn(batch.shape, generator=generator, device=batch.device)
        return nn.functional.mse_loss(model(noisy).float(), batch), {}

    def evaluate(model):
        with torch.no_grad():
            x = images.to(next(model.parameters()).device)
            return {"val_loss": nn.functional.mse_loss(model(x), x).item()}

    objective = Objective(loss_fn, evaluate, "val_loss", "min")
    settings = Settings(epochs=2, batch_size=16, lr=0.01, schedule="cosine")
    for precision in ("bf16", "fp16"):
        result = fit(
            Conv().to(gpu),
            images,
            objective,
            dataclasses.replace(settings, precision=precision),
            seed_everything(0, gpu),
        )
        assert result.history[-1]["val_loss"] < result.history[0]["val_loss"] * 2
    path = tmp_path / "last.pt"
    fit(
        Conv().to(gpu),
        images,
        objective,
        dataclasses.replace(settings, epochs=1),
        seed_everything(0, gpu),
        Checkpointing(path),
    )
    assert CheckpointState.load(path).device == "cuda:0"

    def cpu_loss(model, batch, generator, progress, rows=slice(None)):
        noisy = batch + 0.1 * torch.randn(batch.shape, generator=generator)
        return nn.functional.mse_loss(model(noisy), batch), {}

    resumed = fit(
        Conv(),
        images,
        dataclasses.replace(objective, loss_fn=cpu_loss),
        settings,
        seed_everything(0),
        Checkpointing(path, resume=True),
    )
    assert len(resumed.history) == 2


@pytest.mark.cuda
def test_cuda_tiny_ae_and_vae_runs_on_the_gpu(tracking, monkeypatch):
    from latent_models.kinds.denoiser.recipe import run_ae
    from latent_models.kinds.vae.config import VAEConfig
    from latent_models.kinds.vae.recipe import run_vae
    from latent_models.serving.pyfunc import load_torch_model

    ae = run_ae(AEConfig(**TINY, register=False, device="cuda", precision="auto"))
    vae = run_vae(VAEConfig(**TINY, register=False, device="cuda", iw_samples=10, iw_images=50, prior_components=2))
    assert mlflow.get_run(ae["run_id"]).data.tags["device_name"] == torch.cuda.get_device_name(0)
    assert vae["test_neg_elbo"] > 0
    monkeypatch.setenv(device.ENV_VAR, "cpu")  # a version logged on the GPU serves on a CPU-only host
    model, _ = load_torch_model(ae["model_uri"])
    assert next(model.parameters()).device.type == "cpu"
    monkeypatch.setenv(device.ENV_VAR, "cuda")
    gpu_model, _ = load_torch_model(ae["model_uri"])
    x = torch.rand(4, 1, 28, 28)
    with torch.inference_mode():
        assert torch.allclose(model(x), gpu_model(x.cuda()).cpu(), atol=1e-4)


@pytest.mark.cuda
def test_cuda_tiny_vamp_run_serves_the_same_answers_on_the_gpu_and_the_cpu(tracking, monkeypatch):
    """The learned prior, its cached mixture and the importance-weighted score on the GPU; the
    score's draws are made on the CPU, so a seed gives the same numbers on either device."""
    import numpy as np
    import pandas as pd

    from latent_models.kinds.vamp.config import VampConfig
    from latent_models.kinds.vamp.recipe import run_vamp

    run = run_vamp(VampConfig(**TINY, device="cuda", iw_samples=10, iw_images=50, pseudo_inputs=10))
    assert mlflow.get_run(run["run_id"]).data.tags["device_name"] == torch.cuda.get_device_name(0)
    x = np.random.default_rng(0).random((4, 28, 28), dtype=np.float32)
    answers = {}
    for where in ("cpu", "cuda"):
        monkeypatch.setenv(device.ENV_VAR, where)
        loaded = mlflow.pyfunc.load_model(run["model_uri"])
        assert next(loaded.unwrap_python_model().model.parameters()).device.type == where
        answers[where] = (
            loaded.predict(x),
            loaded.predict(pd.DataFrame([{"n": 3, "seed": 1}]), params={"mode": "sample"}),
            loaded.predict(x, params={"mode": "score", "k": 20, "seed": 0})["nll_nats"].to_numpy(),
        )
    (cpu_images, cpu_samples, cpu_nll), (gpu_images, gpu_samples, gpu_nll) = answers["cpu"], answers["cuda"]
    np.testing.assert_allclose(gpu_images, cpu_images, rtol=0, atol=1e-4)  # as the denoiser's, above
    np.testing.assert_allclose(gpu_samples, cpu_samples, rtol=0, atol=1e-4)
    np.testing.assert_allclose(gpu_nll, cpu_nll, rtol=1e-4)


def test_device_check_runs_in_config_validation(cpu_only):
    from latent_models.config import EvaluateConfig, MainConfig, SweepConfig
    from latent_models.errors import ConfigError

    for make, kw in (
        (AEConfig, dict(device="cuda")),
        (MainConfig, dict(precision="fp16", device="cpu")),
        (EvaluateConfig, dict(device="mps")),
        (SweepConfig, dict(device="cuda:1")),
    ):
        with pytest.raises(DeviceError):
            make(**kw)  # a config validates itself when made
    assert not issubclass(DeviceError, ConfigError)  # its own user error (cli.USER_ERRORS)
    assert DeviceError in cli.USER_ERRORS
    assert dataclasses.replace(AEConfig(), device="cpu").validate() is None
