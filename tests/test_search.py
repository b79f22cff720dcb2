"""The search: Optuna trials as nested runs, pruned on validation, chosen on validation,
resumable, shared by several processes; bad input is one line and starts nothing."""

import json
import os
import subprocess
import sys
from pathlib import Path

import mlflow
import optuna
import pytest
from click.testing import CliRunner
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState

from latent_models import cli
from latent_models.config import SearchConfig
from latent_models.errors import ConfigError
from latent_models.kinds.denoiser.config import AEConfig
from latent_models.tuning import search
from latent_models.tuning.search import best_trial, parse_space, run_search
from tests.conftest import FIXTURE_DATA, TINY_SUBSET, params_text

# Each trial's settings; not width, which SPACE varies.
SMALL = params_text(dict(TINY_SUBSET, iterations=1), leave_out=("data_dir", "width"))
# lr spans three decades: the low end is clearly behind after one epoch, so the pruner has work.
SPACE = "lr=loguniform(1e-5,1e-2) width=int(4,8)"


def _search(**kw) -> SearchConfig:
    return SearchConfig(
        **{
            "space": SPACE,
            "params": SMALL,
            "data_dir": str(FIXTURE_DATA),
            "sampler": "random",
            "seed": 3,
            "pruner_startup_trials": 1,
            "pruner_warmup_epochs": 0,
            "experiment_name": "search-test",
            **kw,
        }
    )


def _children(parent_id: str):
    client = MlflowClient()
    experiment = client.get_run(parent_id).info.experiment_id
    return client.search_runs([experiment], f"tags.mlflow.parentRunId = '{parent_id}'")


def _study(name="search-test-ae"):
    return optuna.load_study(study_name=name, storage=f"sqlite:///{Path('optuna.db').resolve()}")


def test_trials_are_nested_runs_pruned_and_chosen_on_validation_and_a_rerun_adds_only_missing(tracking):
    first = run_search(_search(n_trials=3))
    client = MlflowClient()
    children = _children(first["run_id"])
    assert len(children) == 3
    by_trial = {int(c.data.tags["optuna_trial"]): c for c in children}
    assert sorted(by_trial) == [0, 1, 2]
    pruned = [c for c in children if c.data.tags["optuna_state"] == "pruned"]
    complete = [c for c in children if c.data.tags["optuna_state"] == "complete"]
    assert pruned and complete, "the pruner stopped no trial (or every one)"
    for run in pruned:  # stopped at that epoch, says so, and is not left for resume=last
        epochs = int(run.data.tags["pruned_at_epoch"])
        assert epochs < 2 and run.info.status == "FINISHED"
        assert len(client.get_metric_history(run.info.run_id, "val_psnr")) == epochs
        assert "test_psnr" not in run.data.metrics and "pruned after epoch" in run.data.tags["mlflow.note.content"]
    for run in complete:  # ordinary training runs: test metrics, figures, report, model
        assert {"test_psnr", "val_psnr"} <= set(run.data.metrics) and run.info.status == "FINISHED"
        assert {a.path for a in client.list_artifacts(run.info.run_id)} >= {"figures", "report.html"}
    # chosen on validation: the selected epoch's val_psnr is the best of the run's epochs
    val = {c.info.run_id: max(m.value for m in client.get_metric_history(c.info.run_id, "val_psnr")) for c in complete}
    parent = client.get_run(first["run_id"])
    best = max(val, key=val.get)
    assert parent.data.tags["best_run_id"] == best == first["best"]["run_id"]
    assert parent.data.metrics["best_val_psnr"] == pytest.approx(val[best])
    assert parent.data.tags["model_type"] == "search"
    assert int(parent.data.tags["best_trial"]) == int(client.get_run(best).data.tags["optuna_trial"])
    table = json.loads(
        open(mlflow.artifacts.download_artifacts(run_id=first["run_id"], artifact_path="search/trials.json")).read()
    )
    assert len(table["data"]) == 3 and {
        "number",
        "state",
        "lr",
        "width",
        "val_psnr",
        "test_psnr",
        "run_id",
        "pruned_at_epoch",
    } <= set(table["columns"])
    assert "figures/optimization_history.png" in {a.path for a in client.list_artifacts(first["run_id"], "figures")}
    assert MlflowClient().search_registered_models() == []  # trials are never registered by themselves

    second = run_search(_search(n_trials=4))  # the same study: one trial is missing, one runs
    assert [int(c.data.tags["optuna_trial"]) for c in _children(second["run_id"])] == [3]
    assert len(_study().trials) == 4


def test_best_trial_is_chosen_on_validation_where_test_disagrees():
    def trial(val, test):
        return optuna.trial.create_trial(value=val, params={}, distributions={}, user_attrs={"test_psnr": test})

    trials = [
        trial(20.0, 25.0),
        trial(22.0, 21.0),
        trial(21.0, 30.0),
        optuna.trial.create_trial(state=TrialState.PRUNED, intermediate_values={0: 99.0}),
    ]
    assert best_trial(trials, maximize=True).value == 22.0  # not the 30 dB test trial, not the pruned one
    assert best_trial(trials, maximize=False).value == 20.0
    assert best_trial(trials[3:], maximize=True) is None


def test_a_killed_search_continues_without_repeating_finished_trials(tracking, monkeypatch):
    run_ae = search.trainer("ae")

    def killed_in_trial_1(child, **kw):
        def hook(epoch, metrics):
            kw_hook(epoch, metrics)
            if child.run_name.startswith("trial 1:"):
                raise KeyboardInterrupt

        kw_hook = kw.pop("epoch_hook")
        return run_ae(child, epoch_hook=hook, **kw)

    monkeypatch.setattr(search, "trainer", lambda model: killed_in_trial_1)
    with pytest.raises(KeyboardInterrupt, match="rerun the same search"):
        run_search(_search(n_trials=2, pruner="none"))
    killed = MlflowClient().search_runs(
        [MlflowClient().get_experiment_by_name("search-test").experiment_id], "tags.model_type = 'search'"
    )[0]
    assert killed.info.status == "KILLED"
    assert [t.state for t in _study().trials] == [TrialState.COMPLETE, TrialState.FAIL]
    trial_0_run = _study().trials[0].user_attrs["run_id"]

    monkeypatch.undo()
    monkeypatch.chdir(Path(mlflow.get_tracking_uri()[len("sqlite:///") :]).parent)
    resumed = run_search(_search(n_trials=2, pruner="none"))
    assert [int(c.data.tags["optuna_trial"]) for c in _children(resumed["run_id"])] == [2]
    trials = _study().trials
    assert [t.state for t in trials] == [TrialState.COMPLETE, TrialState.FAIL, TrialState.COMPLETE]
    assert trials[0].user_attrs["run_id"] == trial_0_run  # not trained again


def test_two_processes_share_one_study(tmp_path):
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    env = dict(os.environ, MLFLOW_TRACKING_URI=f"sqlite:///{tmp_path / 'mlflow.db'}")
    env.pop("MLFLOW_RUN_ID", None)
    env.pop("MLFLOW_EXPERIMENT_ID", None)
    args = [
        str(Path(sys.executable).parent / "latent-models"),
        "search",
        "--space",
        SPACE,
        "--params",
        SMALL,
        "--data_dir",
        str(FIXTURE_DATA),
        "--n_trials",
        "3",
        "--pruner",
        "none",
        "--storage",
        storage,
        "--study_name",
        "shared",
        "--experiment_name",
        "search-two",
    ]
    procs = [
        subprocess.Popen(
            args + ["--seed", str(seed)],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for seed in (1, 2)
    ]
    outputs = [p.communicate(timeout=240)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], "\n".join(o[-2000:] for o in outputs)
    trials = optuna.load_study(study_name="shared", storage=storage).trials
    counted = [t for t in trials if t.state == TrialState.COMPLETE]
    assert len(counted) == 3 and len({t.number for t in trials}) == len(trials)
    mlflow.set_tracking_uri(env["MLFLOW_TRACKING_URI"])
    try:
        client = MlflowClient()
        experiment = client.get_experiment_by_name("search-two").experiment_id
        parents = client.search_runs([experiment], "tags.model_type = 'search'")
        children = [c for p in parents for c in _children(p.info.run_id)]
    finally:
        mlflow.set_tracking_uri(None)
    assert len(parents) == 2  # one parent run per process; its children are the trials it ran
    assert sorted(int(c.data.tags["optuna_trial"]) for c in children) == sorted(t.number for t in counted)


def test_space_forms():
    dims = parse_space(
        "lr=loguniform(1e-4,1e-2) width=int(8,32) arch=choice(unet, conv) noise_level=uniform(0.1,0.5)", AEConfig
    )
    assert [str(d) for d in dims] == [
        "lr=loguniform(0.0001,0.01)",
        "width=int(8,32)",
        "arch=choice(unet,conv)",
        "noise_level=uniform(0.1,0.5)",
    ]


def test_space_from_yaml(tmp_path):
    path = tmp_path / "space.yaml"
    path.write_text("lr: loguniform(1e-4, 1e-2)\narch: [unet, conv]\nwidth: {type: int, low: 8, high: 32}\n")
    assert [str(d) for d in parse_space(str(path), AEConfig)] == [
        "lr=loguniform(0.0001,0.01)",
        "arch=choice(unet,conv)",
        "width=int(8,32)",
    ]
    with pytest.raises(ConfigError, match="cannot read the YAML file"):
        parse_space(str(tmp_path / "missing.yaml"), AEConfig)


BAD_INPUT = [
    (["--space", "colour=choice(red,blue)"], "'colour' is not a param a search can set for its trials; choose from"),
    (["--space", ""], "space is empty"),
    (["--space", "lr=loguniform(1e-4"], "space: cannot read 'lr=loguniform(1e-4'"),
    (["--space", "lr=gamma(1,2)"], "unknown distribution 'gamma'"),
    (["--space", "lr=uniform(0.1,0.01)"], "lr: low (0.1) must be < high (0.01)"),
    (["--space", "width=int(8,8)"], "width: low (8) must be < high (8)"),
    (["--space", "lr=loguniform(0,1)"], "loguniform needs low > 0"),
    (["--space", "width=uniform(8,32)"], "width is a int param; use int(low,high)"),
    (["--space", "noise_level=uniform(-1,0.5)"], "space: noise_level=-1.0: noise_level must be >= 0"),
    (["--metric", "test_psnr"], "metric 'test_psnr' is not a validation metric of ae runs"),
    (["--model", "vae", "--metric", "val_psnr"], "metric 'val_psnr' is not a validation metric of vae runs"),
    (
        ["--storage", "sqlite:////nonexistent/folder/study.db"],
        "storage 'sqlite:////nonexistent/folder/study.db' cannot be opened",
    ),
    (["--storage", "nosuchdb://x"], "storage 'nosuchdb://x' cannot be opened"),
]


def test_bad_input_is_one_line_and_starts_nothing(tracking):
    for args, message in BAD_INPUT:
        result = CliRunner().invoke(cli.search, ["--data_dir", str(FIXTURE_DATA), *args])
        assert result.exit_code == 1 and isinstance(result.exception, SystemExit), (args, result.output)
        assert message in result.output and len(result.output.strip().splitlines()) == 1, (args, result.output)
    client = MlflowClient()
    assert client.search_runs([e.experiment_id for e in client.search_experiments()]) == []
    assert not Path("optuna.db").exists()
