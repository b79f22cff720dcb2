"""The sweep: a grid of params as child runs under one parent, with a summary."""

import json

import mlflow
import pytest
from click.testing import CliRunner
from mlflow.tracking import MlflowClient

from latent_models import cli
from latent_models.config import SweepConfig
from latent_models.errors import ConfigError
from latent_models.tuning.sweep import child_configs, run_sweep
from tests.conftest import FIXTURE_DATA, TINY_SUBSET, params_text

CHILD = dict(TINY_SUBSET, epochs=1, iterations=1)  # each child's settings
SMALL = params_text(CHILD)


def test_three_by_two_grid_lands_as_six_comparable_children(tracking):
    cfg = SweepConfig(
        grid="noise_level=0.1,0.3,0.5 arch=conv,unet",
        params=SMALL,
        data_dir=str(FIXTURE_DATA),
        experiment_name="sweep-test",
    )
    result = run_sweep(cfg)
    client = MlflowClient()
    parent = client.get_run(result["run_id"])
    children = client.search_runs([parent.info.experiment_id], f"tags.mlflow.parentRunId = '{result['run_id']}'")
    assert len(children) == 6
    seen = {(float(c.data.params["noise_level"]), c.data.params["arch"]) for c in children}
    assert seen == {(n, a) for n in (0.1, 0.3, 0.5) for a in ("conv", "unet")}
    for child in children:
        assert child.data.params["epochs"] == "1" and child.data.params["width"] == "8"
        assert "test_psnr" in child.data.metrics and "val_psnr" in child.data.metrics
        assert child.info.status == "FINISHED"
    # Ranked by the validation PSNR of the epoch each child selected; test PSNR reported beside it.
    by_run = {
        c.info.run_id: max(m.value for m in client.get_metric_history(c.info.run_id, "val_psnr")) for c in children
    }
    assert {r["run_id"]: r["val_psnr"] for r in result["rows"]} == pytest.approx(by_run)
    assert {r["run_id"]: r["test_psnr"] for r in result["rows"]} == pytest.approx(
        {c.info.run_id: c.data.metrics["test_psnr"] for c in children}
    )
    best = max(by_run, key=by_run.get)
    assert parent.data.tags["best_run_id"] == best and parent.data.tags["selected_on"] == "val_psnr"
    assert parent.data.metrics["best_val_psnr"] == pytest.approx(by_run[best])
    assert MlflowClient().search_registered_models() == []  # register=false by default
    table = json.loads(
        open(mlflow.artifacts.download_artifacts(run_id=result["run_id"], artifact_path="sweep/summary.json")).read()
    )
    assert len(table["data"]) == 6 and {"noise_level", "arch", "val_psnr", "test_psnr"} <= set(table["columns"])
    figures = {a.path for a in client.list_artifacts(result["run_id"], "figures")}
    assert figures == {"figures/val_psnr_vs_noise_level.png", "figures/val_psnr_vs_arch.png"}


def test_children_are_validated_before_anything_runs():
    def configs(**kw):
        return child_configs(SweepConfig(**{"data_dir": str(FIXTURE_DATA), **kw}))

    assert [c.noise_level for _, c in configs(grid="noise_level=0.1,0.2")] == [0.1, 0.2]
    assert [c.beta for _, c in configs(model="vae", grid="beta=0.5,1", params="epochs=3")] == [0.5, 1.0]
    assert configs(model="vae", grid="binarize=true,false")[0][1].binarize is True
    for kw, message in [
        (dict(grid="noise_level=0.1 colour=red"), "'colour' is not a param a sweep can set"),
        (dict(grid="noise_level=0.1,oops"), "noise_level='oops' is not a valid float"),
        (dict(grid="epochs=1.5"), "epochs='1.5' is not a valid int"),
        (dict(grid="noise_level=-0.1,0.2"), "child noise_level=-0.1: noise_level must be >= 0"),
        (dict(grid="noise_level"), "'noise_level' is not name=value"),
        (dict(grid=""), "grid is empty"),
        (dict(grid="arch=conv", params="arch=unet"), "arch is both swept (grid) and fixed (params)"),
        (dict(grid="arch=conv", params="epochs=1,2"), "put swept params in grid"),
        (dict(grid="register=true"), "'register' is not a param a sweep can set"),
        (dict(model="gan", grid="arch=conv"), "model must be one of ae, vae"),
        (dict(grid="noise_level=,"), "grid: noise_level has no values"),
        (dict(grid="arch='conv"), "No closing quotation"),
        (dict(grid="arch=conv", metric="val_psrn"), "metric 'val_psrn' is not a validation metric of ae runs"),
        (
            dict(grid="arch=conv", metric="test_psnr"),
            "choose from val_psnr, val_ssim, val_loss (test metrics are reported, never chosen on)",
        ),
        (dict(model="vae", grid="beta=1", metric="test_neg_elbo"), "choose from val_neg_elbo, val_recon"),
    ]:
        with pytest.raises(ConfigError, match=None) as err:
            configs(**kw) if kw.get("model") != "gan" else SweepConfig(**kw).validate()
        assert message in str(err.value), kw


def test_sweep_mistakes_are_one_line_errors(tracking):
    result = CliRunner().invoke(cli.sweep, ["--grid", "noise_level=0.1 colour=red", "--data_dir", str(FIXTURE_DATA)])
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit) and "colour" in result.output
    assert MlflowClient().search_runs([e.experiment_id for e in MlflowClient().search_experiments()]) == []


def test_the_sweep_picks_on_validation_where_test_disagrees(tracking):
    """Two seeds whose validation and test rankings disagree on the fixture: the winner is the
    validation one, and the test PSNR is reported for both."""
    cfg = SweepConfig(
        grid="seed=4,5",
        params=params_text(dict(CHILD, epochs=2, system_metrics=False)),
        data_dir=str(FIXTURE_DATA),
        experiment_name="sweep-disagree",
    )
    result = run_sweep(cfg)
    rows = {r["seed"]: r for r in result["rows"]}
    by_val = max(rows, key=lambda s: rows[s]["val_psnr"])
    by_test = max(rows, key=lambda s: rows[s]["test_psnr"])
    assert by_val != by_test, f"precondition: validation and test rankings disagree: {rows}"
    assert result["best"]["seed"] == by_val
    parent = MlflowClient().get_run(result["run_id"])
    assert (
        parent.data.tags["best_run_id"] == rows[by_val]["run_id"]
        and parent.data.tags["best_params"] == f"seed={by_val}"
    )
    assert parent.data.metrics["best_run_test_psnr"] == pytest.approx(rows[by_val]["test_psnr"])


def test_a_test_metric_never_chooses_one_line_and_nothing_starts(tracking):
    result = CliRunner().invoke(
        cli.sweep, ["--grid", "noise_level=0.1,0.2", "--metric", "test_psnr", "--data_dir", str(FIXTURE_DATA)]
    )
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit)
    assert result.output.strip().splitlines() == [
        "Error: metric 'test_psnr' is not a validation metric of ae runs; choose from val_psnr, val_ssim, val_loss "
        "(test metrics are reported, never chosen on)"
    ]
    assert MlflowClient().search_runs([e.experiment_id for e in MlflowClient().search_experiments()]) == []
