"""The registry flow: each new version becomes `candidate`, and `champion` when it beats the
champion on validation; the `promote` entry point moves an alias by hand."""

import shutil

import mlflow
import pytest
from click.testing import CliRunner
from mlflow.tracking import MlflowClient

from latent_models import cli
from latent_models.config import AEConfig
from latent_models.tracking import CANDIDATE, CHAMPION, aliases, promote_if_better
from latent_models.train_ae import run_ae
from tests.conftest import FIXTURE_DATA

AE_TAGS = {"dataset": "mnist", "noise": "uniform", "noise_level": 0.5}
VAE_TAGS = {"dataset": "mnist", "likelihood": "bernoulli", "binarize": False}


@pytest.fixture(scope="module")
def empty_store(tmp_path_factory):
    """An SQLite store with MLflow's tables created once (creating them takes seconds)."""
    path = tmp_path_factory.mktemp("template") / "mlflow.db"
    MlflowClient(f"sqlite:///{path}").search_experiments()
    return path


@pytest.fixture
def tracking(tmp_path, monkeypatch, empty_store):
    """Like conftest's `tracking` (a private store, the test inside tmp_path), from the template."""
    shutil.copy(empty_store, tmp_path / "mlflow.db")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.delenv("MLFLOW_RUN_ID", raising=False)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    yield uri
    while mlflow.active_run():
        mlflow.end_run()
    mlflow.set_tracking_uri(None)
    mlflow.set_registry_uri(None)


def _new_version(name: str, tags: dict, run_id: str | None = None) -> str:
    """A registry version without a real model (the alias logic only reads tags)."""
    client = MlflowClient()
    if not client.search_registered_models(f"name='{name}'"):
        client.create_registered_model(name)
    source = f"runs:/{run_id}/model" if run_id else "file:///nowhere/model"
    version = client.create_model_version(name, source, run_id=run_id, tags={k: str(v) for k, v in tags.items()})
    return str(version.version)


def _promote(name, value, metric="val_psnr", higher=True, tags=AE_TAGS, promote=True, run_id=None):
    version = _new_version(name, tags, run_id)
    return version, promote_if_better(name, version, metric, value, higher, tags, promote)


def test_first_version_is_champion_then_only_better_ones_take_it(tracking):
    v1, first = _promote("m", 20.0)
    assert first.promoted and aliases("m") == {CANDIDATE: v1, CHAMPION: v1}
    v2, worse = _promote("m", 19.5)
    assert not worse.promoted and worse.decision == "kept" and "does not beat 20.0000" in worse.reason
    assert aliases("m") == {CANDIDATE: v2, CHAMPION: v1}
    v3, tie = _promote("m", 20.0)
    assert not tie.promoted and aliases("m")[CHAMPION] == v1
    v4, better = _promote("m", 20.5)
    assert better.promoted and aliases("m") == {CANDIDATE: v4, CHAMPION: v4}
    assert better.previous_champion == v1
    tags = MlflowClient().get_model_version("m", v2).tags
    assert tags["val_psnr"] == "19.5" and tags["promotion"].startswith("kept (val_psnr 19.5000 does not beat")


def test_vae_champion_needs_a_lower_neg_elbo(tracking):
    kw = dict(metric="val_neg_elbo", higher=False, tags=VAE_TAGS)
    v1, _ = _promote("v", 110.0, **kw)
    _, higher = _promote("v", 111.0, **kw)
    assert not higher.promoted and aliases("v")[CHAMPION] == v1
    v3, lower = _promote("v", 105.0, **kw)
    assert lower.promoted and aliases("v")[CHAMPION] == v3


def test_a_different_noise_setting_is_not_comparable(tracking):
    v1, _ = _promote("m", 20.0)
    v2, other = _promote("m", 35.0, tags={**AE_TAGS, "noise": "gaussian", "noise_level": 0.3})
    assert not other.promoted and aliases("m") == {CANDIDATE: v2, CHAMPION: v1}
    assert "not comparable" in other.reason and "noise uniform (new: gaussian)" in other.reason
    assert "noise_level 0.5 (new: 0.3)" in other.reason


def test_promote_false_sets_only_the_candidate(tracking):
    v1, _ = _promote("m", 20.0)
    v2, skipped = _promote("m", 99.0, promote=False)
    assert skipped.decision == "skipped" and aliases("m") == {CANDIDATE: v2, CHAMPION: v1}


def test_champion_value_falls_back_to_its_run_history(tracking):
    mlflow.set_experiment("history")
    with mlflow.start_run() as run:
        for step, value in enumerate([18.0, 21.0, 20.0]):
            mlflow.log_metric("val_psnr", value, step=step)
    v1 = _new_version("m", AE_TAGS, run.info.run_id)
    MlflowClient().set_registered_model_alias("m", CHAMPION, v1)  # e.g. registered before this flow existed
    _, worse = _promote("m", 20.5)
    assert not worse.promoted and "does not beat 21.0000 of champion version 1" in worse.reason


def test_training_promotes_only_a_better_model(tracking):
    """The real pipeline: a clearly worse second version stays candidate; a better third takes champion."""
    common = dict(data_dir=str(FIXTURE_DATA), download=False, val_size=100, limit_test=50, batch_size=50, width=8,
                  iterations=1, registered_model_name="t-denoiser", experiment_name="registry")
    first = run_ae(AEConfig(**common, epochs=1, lr=1e-3))
    worse = run_ae(AEConfig(**common, epochs=1, lr=1e-6))
    better = run_ae(AEConfig(**common, epochs=3, lr=3e-3))
    assert first["promotion"].startswith("champion (first champion")
    assert worse["promotion"].startswith("kept (val_psnr")
    assert better["promotion"].startswith("champion (val_psnr")
    assert aliases("t-denoiser") == {CANDIDATE: "3", CHAMPION: "3"}
    run = MlflowClient().get_run(worse["run_id"])
    assert run.data.tags["promotion"] == "kept" and "does not beat" in run.data.tags["promotion_reason"]
    assert float(MlflowClient().get_model_version("t-denoiser", "2").tags["val_psnr"]) == pytest.approx(
        max(m.value for m in MlflowClient().get_metric_history(worse["run_id"], "val_psnr")))


# --- the promote entry point -----------------------------------------------------------


def test_promote_moves_the_champion_to_a_version_or_the_candidate(tracking):
    v1, _ = _promote("m", 20.0)
    v2, _ = _promote("m", 10.0)
    result = CliRunner().invoke(cli.promote, ["--registered_model_name", "m", "--version", "2.0"])
    assert result.exit_code == 0, result.output
    assert "m@champion -> version 2 (was 1)" in result.output
    assert aliases("m") == {CANDIDATE: v2, CHAMPION: v2}
    CliRunner().invoke(cli.promote, ["--registered_model_name", "m", "--version", "1"])
    assert aliases("m")[CHAMPION] == v1
    result = CliRunner().invoke(cli.promote, ["--registered_model_name", "m"])  # version 0: the candidate
    assert result.exit_code == 0 and aliases("m")[CHAMPION] == v2
    tags = MlflowClient().get_model_version("m", v2).tags
    assert tags["promotion"].startswith("champion (set by the promote entry point")


@pytest.mark.parametrize(
    "args,message",
    [
        (["--registered_model_name", "m", "--version", "7"], "m has no version 7; versions: 1"),
        (["--registered_model_name", "nope"], "no registered model named 'nope'; registered: m"),
        (["--registered_model_name", "m", "--version", "-1"], "version must be >= 0"),
        (["--registered_model_name", "m", "--alias", "v1"], "cannot set alias 'v1'"),
    ],
)
def test_promote_mistakes_give_one_clear_error(tracking, args, message):
    _promote("m", 20.0)
    result = CliRunner().invoke(cli.promote, args)
    assert result.exit_code != 0
    assert message in result.output and "Traceback" not in result.output


def test_main_passes_promote_on_to_both_children():
    from latent_models.config import MainConfig

    cfg = MainConfig(promote=False)
    assert cfg.ae_config().promote is False and cfg.vae_config().promote is False
    assert MainConfig().ae_config().promote is True
