"""The registry flow: each new version becomes `candidate`, and `champion` when it beats the
champion on validation; the `promote` entry point moves an alias by hand."""

import shutil

import mlflow
import pytest
from click.testing import CliRunner
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from latent_models import cli
from latent_models.kinds.denoiser.config import AEConfig
from latent_models.kinds.denoiser.recipe import run_ae
from latent_models.tracking import CANDIDATE, CHAMPION, aliases, promote_if_better, ui_link
from latent_models.tracking.registry import set_alias
from tests.conftest import TINY, TINY_SUBSET, tracking_at

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
    """conftest's `tracking` (a private store, the test inside tmp_path, no experiment of an
    earlier store active), with MLflow's tables copied from the template."""
    shutil.copy(empty_store, tmp_path / "mlflow.db")
    monkeypatch.chdir(tmp_path)
    with tracking_at(f"sqlite:///{tmp_path / 'mlflow.db'}", monkeypatch) as uri:
        yield uri


def _new_version(name: str, tags: dict, run_id: str | None = None) -> str:
    """A registry version without a real model (the alias logic only reads tags)."""
    client = MlflowClient()
    if not client.search_registered_models(f"name='{name}'"):
        client.create_registered_model(name)
    source = f"runs:/{run_id}/model" if run_id else "file:///nowhere/model"
    version = client.create_model_version(name, source, run_id=run_id, tags={k: str(v) for k, v in tags.items()})
    return str(version.version)


def _promote(name, value, metric="val_psnr", higher=True, tags=AE_TAGS, promote=True, run_id=None, baseline=None):
    version = _new_version(name, tags, run_id)
    return version, promote_if_better(name, version, metric, value, higher, tags, promote, baseline)


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


def test_two_writers_setting_one_alias_at_once_both_succeed(tracking, monkeypatch):
    """MLflow's SQL store looks an alias up, then inserts it when absent: another run that
    inserts the same alias in between (two trainings registering at once) makes the insert
    fail on the unique key. The retry finds the row and updates it."""
    import sqlalchemy.orm
    from mlflow.store.model_registry.sqlalchemy_store import SqlAlchemyStore

    v1, v2 = _new_version("m", AE_TAGS), _new_version("m", AE_TAGS)
    merge = sqlalchemy.orm.Session.merge
    raced = []

    def merge_then_the_other_run_inserts(self, instance, *args, **kwargs):
        merged = merge(self, instance, *args, **kwargs)
        if not raced:
            raced.append(True)
            SqlAlchemyStore(tracking).set_registered_model_alias("m", CANDIDATE, v1)
        return merged

    monkeypatch.setattr(sqlalchemy.orm.Session, "merge", merge_then_the_other_run_inserts)
    with pytest.raises(MlflowException, match="UNIQUE constraint failed"):
        MlflowClient().set_registered_model_alias("m", CANDIDATE, v2)
    raced.clear()
    MlflowClient().delete_registered_model_alias("m", CANDIDATE)
    set_alias(MlflowClient(), "m", CANDIDATE, v2)
    assert raced and aliases("m") == {CANDIDATE: v2}


def test_a_version_worse_than_doing_nothing_is_never_champion(tracking):
    """Not even the first one: a denoiser below the noisy input's PSNR, or a VAE above the
    mean-image model's -ELBO, is `candidate` only, and the decision says why."""
    v1, first = _promote("m", 10.48, baseline=("the noisy input's val_psnr", 19.49))
    assert first.decision == "rejected" and not first.promoted
    assert first.reason == (
        "val_psnr 10.4800 does not beat the noisy input's val_psnr (19.4900): worse than doing "
        "nothing, so never champion"
    )
    assert aliases("m") == {CANDIDATE: v1}
    assert MlflowClient().get_model_version("m", v1).tags["promotion"].startswith("rejected (val_psnr 10.4800")
    v2, second = _promote("m", 25.0, baseline=("the noisy input's val_psnr", 19.49))
    assert second.promoted and aliases("m") == {CANDIDATE: v2, CHAMPION: v2}
    v3, _ = _promote("m", 26.0, baseline=("the noisy input's val_psnr", 26.5))  # beats the champion, not the input
    assert aliases("m") == {CANDIDATE: v3, CHAMPION: v2}
    kw = dict(metric="val_neg_elbo", higher=False, tags=VAE_TAGS)
    v4, vae = _promote("v", 230.0, baseline=("the mean-image model's val_neg_elbo", 206.0), **kw)
    assert vae.decision == "rejected" and aliases("v") == {CANDIDATE: v4}


def test_the_pipeline_keeps_a_denoiser_worse_than_its_input_from_champion(tracking):
    """Tried by a user: a 1-epoch `conv` denoiser on a few hundred images scores far below
    the noisy input. It is registered as candidate, never champion."""
    result = run_ae(
        AEConfig(
            **dict(
                TINY_SUBSET,
                limit_test=50,
                iterations=1,
                epochs=1,
                arch="conv",
                system_metrics=False,
                registered_model_name="bad-denoiser",
                experiment_name="registry",
            )
        )
    )
    assert result["val_psnr"] < result["val_psnr_noisy"], "precondition: worse than doing nothing"
    assert result["promotion"].startswith("rejected (val_psnr") and aliases("bad-denoiser") == {CANDIDATE: "1"}
    run = MlflowClient().get_run(result["run_id"])
    assert run.data.tags["promotion"] == "rejected" and "worse than doing nothing" in run.data.tags["promotion_reason"]


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
    """The real pipeline: a version worse than its input is rejected, a tie stays candidate,
    a better one takes champion."""
    common = dict(
        TINY,
        limit_test=50,
        batch_size=20,
        lr=5e-3,
        iterations=1,
        noise="gaussian",
        noise_level=0.3,
        system_metrics=False,
        registered_model_name="t-denoiser",
        experiment_name="registry",
    )
    first = run_ae(AEConfig(**dict(common, epochs=2)))
    worse = run_ae(AEConfig(**dict(common, epochs=1)))  # below the noisy input's val_psnr
    tie = run_ae(AEConfig(**dict(common, epochs=2)))
    better = run_ae(AEConfig(**dict(common, epochs=4)))
    assert first["promotion"].startswith("champion (first champion")
    assert worse["promotion"].startswith("rejected (val_psnr") and worse["val_psnr"] < worse["val_psnr_noisy"]
    assert tie["promotion"].startswith("kept (val_psnr") and "does not beat" in tie["promotion"]
    assert better["promotion"].startswith("champion (val_psnr")
    assert aliases("t-denoiser") == {CANDIDATE: "4", CHAMPION: "4"}
    run = MlflowClient().get_run(tie["run_id"])
    assert run.data.tags["promotion"] == "kept" and "does not beat" in run.data.tags["promotion_reason"]
    assert float(MlflowClient().get_model_version("t-denoiser", "3").tags["val_psnr"]) == pytest.approx(
        max(m.value for m in MlflowClient().get_metric_history(tie["run_id"], "val_psnr"))
    )

    # The registry's pages explain themselves: the version's and the logged model's description is
    # the run's summary with the metrics it was chosen on; the registered model says how to call it.
    client = MlflowClient()
    described = client.get_model_version("t-denoiser", "4").description
    assert described == client.get_logged_model(better["model_id"]).tags["mlflow.note.content"]
    assert described.startswith("This run trained the `unet` denoiser on mnist for 4 epochs")
    assert f"val_psnr = {better['val_psnr']:.4g}" in described and f"test_psnr = {better['test_psnr']:.4g}" in described
    registered = client.get_registered_model("t-denoiser").description
    assert (
        registered.startswith("A convolutional denoising autoencoder") and "models:/t-denoiser@champion" in registered
    )
    # The experiment is a model-training one, and the printed link opens the UI's Model training view.
    experiment = client.get_experiment_by_name("registry")
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    assert ui_link(better["run_id"]) == (
        f"http://127.0.0.1:5000/#/experiments/{experiment.experiment_id}/runs/{better['run_id']}"
        "?workflowType=machine_learning"
    )


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
    assert all(child.promote is False for child in cfg.children().values())
    assert MainConfig().children()["ae"].promote is True
