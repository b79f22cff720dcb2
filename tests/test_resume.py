"""Crash safety: SIGKILL after an epoch, then resume=last; Ctrl-C ends the run as KILLED.

The training runs in a subprocess whose per-epoch logger is wrapped (here, in the test) to
announce epoch 1 in a marker file and then wait; the test kills or interrupts it there, so
nothing depends on timing.
"""

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
from click.testing import CliRunner
from mlflow.tracking import MlflowClient

from latent_models import cli
from latent_models import tracking as tracking_module
from latent_models.kinds.denoiser.config import AEConfig
from latent_models.kinds.denoiser.recipe import run_ae
from tests.conftest import REPO, TINY_SUBSET, cli_options

EPOCHS = 3
SETTINGS = dict(
    TINY_SUBSET,
    system_metrics=False,  # no sampling thread to stop while the run is being killed: these tests are about resume
    epochs=EPOCHS,
    iterations=1,
    register=False,
    seed=7,
    experiment_name="resume",
)
PER_EPOCH = ["train_loss", "val_loss", "val_psnr", "val_ssim", "lr"]

# Runs entrypoints/ae.py; after epoch 1 (step 0) is logged and checkpointed, touches MARKER
# and blocks until killed. With BLOCK unset it runs normally.
DRIVER = textwrap.dedent("""
    import os, runpy, sys, time
    from pathlib import Path
    from latent_models.tracking import checkpoints
    original = checkpoints.epoch_logger

    def epoch_logger(run_id, resumed):
        log = original(run_id, resumed)
        def on_epoch(epoch, metrics):
            log(epoch, metrics)
            if os.environ.get("BLOCK") and epoch == 0:
                Path(os.environ["MARKER"]).write_text(run_id)
                while True:
                    time.sleep(0.1)
        return on_epoch

    checkpoints.epoch_logger = epoch_logger
    sys.argv = ["entrypoints/ae.py", *sys.argv[1:]]
    runpy.run_path(os.path.join(os.environ["REPO"], "entrypoints", "ae.py"), run_name="__main__")
""")


def _args(**extra):
    return cli_options({**SETTINGS, **extra})


def _env(tracking_uri, tmp_path, block=False):
    env = dict(
        os.environ,
        MLFLOW_TRACKING_URI=tracking_uri,
        REPO=str(REPO),
        MARKER=str(tmp_path / "epoch1"),
        LATENT_MODELS_CHECKPOINT_DIR=str(tmp_path / "checkpoints"),
        PYTHONPATH=str(REPO),
    )
    env.pop("MLFLOW_RUN_ID", None)
    env.pop("BLOCK", None)
    if block:
        env["BLOCK"] = "1"
    return env


def _start_and_stop_after_epoch_1(tracking_uri, tmp_path, sig):
    marker = tmp_path / "epoch1"
    marker.unlink(missing_ok=True)
    proc = subprocess.Popen(
        [sys.executable, "-c", DRIVER, *_args()],
        cwd=tmp_path,
        env=_env(tracking_uri, tmp_path, block=True),
        # as from a terminal: a test run started in the background (`cmd &`) ignores SIGINT, and a
        # child would inherit that, so Python would never raise KeyboardInterrupt in it
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    while not marker.exists():  # no deadline of our own: pytest's timeout or the exit ends it
        if proc.poll() is not None:
            pytest.fail(f"training exited before epoch 1: {proc.stderr.read()[-3000:]}")
        time.sleep(0.1)
    proc.send_signal(sig)
    try:
        out, err = proc.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        pytest.fail(f"training did not end within 120 s of signal {sig}:\n{err[-3000:]}")
    return marker.read_text(), proc.returncode, out, err


def _resume(tracking_uri, tmp_path, resume):
    proc = subprocess.run(
        [sys.executable, "-c", DRIVER, *_args(resume=resume)],
        cwd=tmp_path,
        env=_env(tracking_uri, tmp_path),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def _uninterrupted(tracking):
    return run_ae(AEConfig(**{**SETTINGS, "experiment_name": "uninterrupted"}))


def _assert_same_as_uninterrupted(run_id, reference):
    client = MlflowClient()
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    for name in PER_EPOCH:
        got = sorted((m.step, m.value) for m in client.get_metric_history(run_id, name))
        want = sorted((m.step, m.value) for m in client.get_metric_history(reference["run_id"], name))
        assert [s for s, _ in got] == list(range(EPOCHS)), f"{name}: steps {[s for s, _ in got]}"
        assert [v for _, v in got] == pytest.approx([v for _, v in want], rel=1e-4, abs=1e-6), name
    for name in ("test_psnr", "test_ssim", "test_mse"):
        assert run.data.metrics[name] == pytest.approx(reference[name], rel=1e-4), name
    assert run.data.metrics["best_epoch"] == reference["best_epoch"]
    assert "checkpoint/last.pt" in [a.path for a in client.list_artifacts(run_id, "checkpoint")]


@pytest.mark.e2e
def test_sigkill_after_epoch_1_then_resume_last(tracking, tmp_path):
    run_id, code, _, _ = _start_and_stop_after_epoch_1(tracking, tmp_path, signal.SIGKILL)
    assert code == -signal.SIGKILL
    client = MlflowClient()
    assert client.get_run(run_id).info.status == "RUNNING"  # a killed process cannot say otherwise
    assert [m.step for m in client.get_metric_history(run_id, "val_psnr")] == [0]
    assert (tmp_path / "checkpoints" / run_id / "last.pt").is_file()

    resumed = _resume(tracking, tmp_path, "last")
    assert f"resumed after epoch 1/{EPOCHS}" in resumed.stdout + resumed.stderr  # continued, not started over
    _assert_same_as_uninterrupted(run_id, _uninterrupted(tracking))
    assert not (tmp_path / "checkpoints" / run_id / "last.pt").exists()  # cleaned up; the artifact stays


@pytest.mark.e2e
def test_ctrl_c_ends_run_killed_with_one_line_and_checkpoint_artifact(tracking, tmp_path):
    run_id, code, out, err = _start_and_stop_after_epoch_1(tracking, tmp_path, signal.SIGINT)
    assert code == 130
    assert "Traceback" not in err
    local = tmp_path / "checkpoints" / run_id / "last.pt"
    lines = [line for line in err.splitlines() if line.startswith("Error:")]
    assert lines == [
        f"Error: interrupted: run {run_id} ended as KILLED; its last finished epoch is saved in "
        f"{local}; continue it with resume={run_id}"
    ], err
    assert MlflowClient().get_run(run_id).info.status == "KILLED"
    # On another machine (no local checkpoint) resume fetches the run's artifact copy: the same bytes.
    fetched = tracking_module.fetch_checkpoint(run_id, str(tmp_path / "elsewhere"))
    assert fetched == tmp_path / "elsewhere" / run_id / "last.pt"
    assert fetched.read_bytes() == local.read_bytes()


def test_resume_errors_are_one_line(tracking, tmp_path):
    result = CliRunner().invoke(cli.command("ae"), _args(resume="nosuchrun"))
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "Error: resume: no run with id 'nosuchrun'" in result.output
    finished = run_ae(AEConfig(**{**SETTINGS, "epochs": 1}))
    with pytest.raises(ValueError, match="has finished; nothing to resume"):
        run_ae(AEConfig(**{**SETTINGS, "resume": finished["run_id"]}))
    with pytest.raises(ValueError, match="no unfinished denoiser run"):
        run_ae(AEConfig(**{**SETTINGS, "resume": "last"}))
