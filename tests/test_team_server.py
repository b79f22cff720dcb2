"""A team tracking server: `mlflow server --backend-store-uri postgresql://...
--artifacts-destination <dir> --serve-artifacts` over a real, throwaway PostgreSQL cluster
on 127.0.0.1. A training run and its registration go through the server, and the
registered model serves from it.

Needs Debian's `postgresql` package (initdb, pg_ctl) and psycopg 3 (`.ci/run` and the test
extra install both); skips with the reason where they are missing or the cluster will not start.
"""

import glob
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from latent_models.kinds.denoiser.config import AEConfig
from latent_models.kinds.denoiser.recipe import run_ae
from tests.conftest import TINY, cli_options, tracking_at
from tests.helpers.servers import ModelServer, free_port, mlflow_server

pytestmark = pytest.mark.e2e

# Gaussian 0.3: two short epochs already beat the noisy input, so the version is champion.
TEAM_RUN = dict(
    TINY,
    limit_test=100,
    batch_size=20,
    lr=5e-3,
    noise="gaussian",
    noise_level=0.3,
    iterations=1,
    experiment_name="team",
)


def _pg_bin() -> Path | None:
    found = shutil.which("initdb") or next(iter(sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))[::-1]), None)
    return Path(os.path.realpath(found)).parent if found else None


@pytest.fixture
def postgres():
    """A fresh cluster in a temporary folder, trust auth on 127.0.0.1 only; stopped and removed after."""
    pytest.importorskip("psycopg", reason="psycopg missing: pip install -e '.[test]' installs psycopg[binary]")
    bindir = _pg_bin()
    if bindir is None:
        pytest.skip("PostgreSQL server binaries not found (Debian: apt-get install postgresql; .ci/run does)")
    root = Path(tempfile.mkdtemp(prefix="latent-models-pg-"))
    as_user: list[str] = []
    if os.geteuid() == 0:  # initdb and postgres refuse to run as root: use the package's postgres user
        if shutil.which("runuser") is None:
            pytest.skip("running as root without runuser: cannot start PostgreSQL as another user")
        shutil.chown(root, "postgres")
        as_user = ["runuser", "-u", "postgres", "--"]
    data, port = root / "data", free_port()
    init = subprocess.run(
        [*as_user, str(bindir / "initdb"), "-D", str(data), "-U", "mlflow", "--auth=trust", "-E", "UTF8"],
        capture_output=True,
        text=True,
    )
    if init.returncode != 0:
        shutil.rmtree(root, ignore_errors=True)
        pytest.skip(f"initdb failed, cannot start PostgreSQL here: {init.stderr.strip()[-500:]}")
    start = subprocess.run(
        [
            *as_user,
            str(bindir / "pg_ctl"),
            "-D",
            str(data),
            "-l",
            str(root / "log"),
            "-w",
            "-o",
            f"-h 127.0.0.1 -p {port} -k {root}",
            "start",
        ],
        capture_output=True,
        text=True,
    )
    if start.returncode != 0:
        log = (root / "log").read_text()[-500:] if (root / "log").exists() else start.stderr
        shutil.rmtree(root, ignore_errors=True)
        pytest.skip(f"PostgreSQL did not start: {log.strip()}")
    try:
        subprocess.run(
            [str(bindir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "mlflow", "mlflow"],
            check=True,
            capture_output=True,
        )
        yield f"postgresql://mlflow@127.0.0.1:{port}/mlflow"
    finally:
        subprocess.run(
            [*as_user, str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"], capture_output=True
        )
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def tracking_server(postgres, tmp_path):
    with mlflow_server(postgres, tmp_path, free_port()) as url:
        yield url, tmp_path / "artifacts"


def test_train_register_and_serve_through_a_postgres_backed_server(tracking_server, tmp_path, monkeypatch):
    import mlflow

    url, artifacts = tracking_server
    work = tmp_path / "client"  # no local store: everything must go through the server
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", url)
    monkeypatch.setenv("LATENT_MODELS_CHECKPOINT_DIR", str(tmp_path / "checkpoints"))
    monkeypatch.delenv("MLFLOW_RUN_ID", raising=False)
    mlflow.set_tracking_uri(url)
    mlflow.set_registry_uri(url)
    try:
        run_ae(AEConfig(**TEAM_RUN, registered_model_name="team-denoiser"))
    finally:
        mlflow.set_tracking_uri(None)
        mlflow.set_registry_uri(None)
        os.environ.pop("MLFLOW_REGISTRY_URI", None)  # set_registry_uri(None) keeps it (see conftest.tracking_at)
    assert not (work / "mlruns").exists() and not (work / "mlflow.db").exists()

    client = MlflowClient(url)
    (run,) = client.search_runs([client.get_experiment_by_name("team").experiment_id])
    assert run.info.status == "FINISHED"
    assert sorted(m.step for m in client.get_metric_history(run.info.run_id, "val_psnr")) == [0, 1]
    assert run.data.tags["dataset_digest"] and run.data.tags["latent_models.version"]
    (version,) = client.search_model_versions("name='team-denoiser'")
    assert client.get_model_version_by_alias("team-denoiser", "champion").version == version.version
    assert list(artifacts.rglob("MLmodel")) and list(artifacts.rglob("last.pt"))  # stored by the server

    with ModelServer("models:/team-denoiser@champion", tmp_path / "serve.log", url) as server:
        x = np.random.default_rng(0).random((2, 28, 28)).round(3).tolist()
        answer = server.post({"inputs": x})
        assert answer.status_code == 200, answer.text[:500]
        y = np.asarray(answer.json()["predictions"])
        assert y.shape == (2, 28, 28) and 0.0 <= y.min() <= y.max() <= 1.0


# --- who may do what: MLflow's basic-auth on the same PostgreSQL ------------------------

ADMIN_PASSWORD = "admin-secret-for-tests-1"
USERS = {"rita": "reader", "tom": "trainer", "rosa": "release-manager"}  # user -> what they are


def _password(user: str) -> str:
    return f"{user}-password-for-tests"


@pytest.fixture
def auth_server(postgres, tmp_path):
    """`mlflow server --app-name latent-models-auth` (MLflow's basic-auth app with the release
    rules) on PostgreSQL: runs in database `mlflow`, users and permissions in `mlflow_auth`.
    The admin password comes from a secret file, never from the ini."""
    import psycopg

    with psycopg.connect(postgres, autocommit=True) as conn:
        conn.execute("CREATE DATABASE mlflow_auth")
    from latent_models.team_access import write_auth_config

    root = tmp_path / "server"
    root.mkdir()
    ini = write_auth_config(root / "auth.ini", postgres.rsplit("/", 1)[0] + "/mlflow_auth")
    assert "password" not in ini.read_text().split("# no admin_password")[0]
    secret = root / "admin_password"
    secret.write_text(ADMIN_PASSWORD + "\n")
    secret.chmod(0o600)
    env = {
        "MLFLOW_AUTH_CONFIG_PATH": str(ini),
        "MLFLOW_AUTH_ADMIN_PASSWORD": "",  # unset: whatever this process's environment holds, the file counts
        "MLFLOW_AUTH_ADMIN_PASSWORD_FILE": str(secret),
        "MLFLOW_FLASK_SERVER_SECRET_KEY": "csrf-key-for-tests",
    }
    with mlflow_server(postgres, root, free_port(), app_name="latent-models-auth", env=env) as url:
        yield url, root


def _cli(args: list[str], url: str, user: str | None, cwd: Path) -> subprocess.CompletedProcess:
    """`latent-models <args>` as `user` (MLflow's credential variables; None: no credentials)."""
    import sys

    env = dict(
        os.environ, MLFLOW_TRACKING_URI=url, LATENT_MODELS_CHECKPOINT_DIR=str(cwd / "checkpoints"), HOME=str(cwd)
    )  # no ~/.mlflow/credentials of the machine's user
    for var in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_ID"):
        env.pop(var, None)
    if user:
        env.update(
            MLFLOW_TRACKING_USERNAME=user,
            MLFLOW_TRACKING_PASSWORD=ADMIN_PASSWORD if user == "admin" else _password(user),
        )
    return subprocess.run(
        [str(Path(sys.executable).parent / "latent-models"), *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
    )


TRAIN = ["ae", *cli_options(dict(TEAM_RUN, system_metrics=False, registered_model_name="latent-denoiser"))]


def _one_line_error(result) -> str:
    """The one `Error:` line of a failed command (a subprocess or a click CliRunner result)."""
    stderr = result.stderr
    assert (getattr(result, "returncode", None) or getattr(result, "exit_code", None)) not in (None, 0), stderr[-3000:]
    assert "Traceback" not in stderr and getattr(result, "exception", SystemExit()).__class__ is SystemExit, stderr
    errors = [line for line in stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, stderr[-3000:]
    return errors[0]


def test_roles_on_a_basic_auth_server(auth_server, tmp_path, monkeypatch):
    """No credentials: refused. A reader cannot log. A trainer trains and registers, but the
    server refuses them moving `champion`: the run and version stay, the decision is `denied`.
    A release manager moves it. `mlflow models serve` with a reader's credentials serves it.

    The unauthenticated and the trainer's commands run as processes (exit code, no traceback);
    the others in this process (each `latent-models` process spends seconds importing torch)."""
    import requests
    from click.testing import CliRunner

    from latent_models.cli import cli

    url, root = auth_server
    work = tmp_path / "client"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.setenv("HOME", str(work))  # no ~/.mlflow/credentials of the machine's user
    monkeypatch.setenv("LATENT_MODELS_CHECKPOINT_DIR", str(work / "checkpoints"))
    passwords = tmp_path / "passwords"
    passwords.mkdir()
    for user in USERS:
        (passwords / user).write_text(_password(user))

    def invoke(args: list[str], user: str):
        with monkeypatch.context() as as_user, tracking_at(url, as_user):
            as_user.setenv("MLFLOW_TRACKING_USERNAME", user)
            as_user.setenv("MLFLOW_TRACKING_PASSWORD", ADMIN_PASSWORD if user == "admin" else _password(user))
            return CliRunner().invoke(cli, args)

    # The server took the admin password from the secret file; MLflow's old default is refused.
    assert (
        requests.get(
            f"{url}/api/2.0/mlflow/users/get", params={"username": "admin"}, auth=("admin", ADMIN_PASSWORD), timeout=30
        ).status_code
        == 200
    )
    assert (
        requests.get(
            f"{url}/api/2.0/mlflow/users/get", params={"username": "admin"}, auth=("admin", "password1234"), timeout=30
        ).status_code
        == 401
    )

    roles = [
        "team-access",
        "apply",
        "--readers",
        "rita",
        "--trainers",
        "tom",
        "--release-managers",
        "rosa",
        "--password-dir",
        str(passwords),
    ]
    first = invoke(roles, "admin")
    assert first.exit_code == 0, first.output
    assert "created role trainers" in first.stdout and "tom: joined trainers" in first.stdout
    assert "registered model latent-denoiser created" in first.stdout
    again = invoke(roles, "admin")  # idempotent
    assert again.exit_code == 0 and again.stdout.strip() == "nothing to change", again.output
    line = _one_line_error(invoke(roles, "tom"))  # only an admin sets roles up
    assert "'tom'" in line and "team access" in line, line

    line = _one_line_error(_cli(TRAIN, url, None, work))
    assert "HTTP 401" in line and "no user" in line and "'team'" in line, line

    trained = _cli(TRAIN, url, "tom", work)
    assert trained.returncode == 0, trained.stderr[-3000:]
    assert "promotion=denied" in trained.stdout, trained.stdout[-2000:]

    line = _one_line_error(invoke(TRAIN, "rita"))
    assert "HTTP 403" in line and "'rita'" in line and "run in experiment 'team'" in line, line

    client = MlflowClient(url)
    with monkeypatch.context() as as_rosa:
        as_rosa.setenv("MLFLOW_TRACKING_USERNAME", "rosa")
        as_rosa.setenv("MLFLOW_TRACKING_PASSWORD", _password("rosa"))
        (run,) = client.search_runs([client.get_experiment_by_name("team").experiment_id])
        assert run.info.status == "FINISHED" and run.data.tags["promotion"] == "denied"
        assert "'tom' may not move champion" in run.data.tags["promotion_reason"]
        (version,) = client.search_model_versions("name='latent-denoiser'")
        model = client.get_registered_model("latent-denoiser")
        assert model.aliases == {"candidate": version.version}
        assert version.tags["promotion"].startswith("denied")

    promote = ["promote", "--registered_model_name", "latent-denoiser"]
    line = _one_line_error(invoke(promote, "tom"))
    assert "HTTP 403" in line and "'tom'" in line and "alias 'champion' of registered model 'latent-denoiser'" in line
    moved = invoke(promote, "rosa")
    assert moved.exit_code == 0, moved.output
    assert f"latent-denoiser@champion -> version {version.version}" in moved.stdout

    with monkeypatch.context() as rotate:  # an admin resets a user's password, from the environment
        rotate.setenv("LATENT_MODELS_NEW_PASSWORD", "rita-rotated-password")
        assert invoke(["team-access", "password", "rita"], "admin").exit_code == 0
    users_get = f"{url}/api/2.0/mlflow/users/get"
    assert (
        requests.get(users_get, params={"username": "rita"}, auth=("rita", _password("rita")), timeout=30).status_code
        == 401
    )
    assert (
        requests.get(
            users_get, params={"username": "rita"}, auth=("rita", "rita-rotated-password"), timeout=30
        ).status_code
        == 200
    )
    with monkeypatch.context() as rotate:  # and back, as rita herself (MLflow asks her current password)
        rotate.setenv("LATENT_MODELS_NEW_PASSWORD", _password("rita"))
        rotate.setenv("MLFLOW_TRACKING_PASSWORD", "rita-rotated-password")
        rotate.setenv("MLFLOW_TRACKING_USERNAME", "rita")
        with tracking_at(url, rotate):
            assert CliRunner().invoke(cli, ["team-access", "password", "rita"]).exit_code == 0

    _write_once(url, work, invoke, monkeypatch)

    as_rita = {"MLFLOW_TRACKING_USERNAME": "rita", "MLFLOW_TRACKING_PASSWORD": _password("rita")}
    # the serving host reads the registry as a reader
    with ModelServer("models:/latent-denoiser@champion", tmp_path / "serve.log", url, env=as_rita) as server:
        answer = server.post({"inputs": np.random.default_rng(0).random((1, 28, 28)).round(3).tolist()})
        assert answer.status_code == 200, answer.text[:500]
        assert np.asarray(answer.json()["predictions"]).shape == (1, 28, 28)


# --- write-once: a version's files cannot change (docs/write-once.md) ---------------------


def _auth(user: str) -> tuple[str, str]:
    return user, ADMIN_PASSWORD if user == "admin" else _password(user)


def _refused(answer, user: str, *words: str) -> str:
    """A 403 from the team server's write-once rule: one line naming the user and `words`."""
    text = answer.text.strip()
    assert answer.status_code == 403, (answer.status_code, text[:500])
    assert "\n" not in text and f"user {user!r}" in text and "write-once" in text, text
    assert all(w in text for w in words), (words, text)
    return text


def _write_once(url: str, work: Path, invoke, monkeypatch) -> None:
    """After `champion` moved: a trainer can change none of its files, its seal tags, nor its
    finished run's files, each refused in one line; a copy of it on disk that was changed does
    not load; training with checkpoints as models, interrupted and resumed, still works for a
    trainer, and leaves sealed models behind. An admin still can write."""
    import mlflow
    import requests

    from latent_models import tracking as tracking_module
    from latent_models_seal import SEAL_TAG, ModelRefused, sha256_file

    client = MlflowClient(url)
    with monkeypatch.context() as as_rita:
        as_rita.setenv("MLFLOW_TRACKING_USERNAME", "rita")
        as_rita.setenv("MLFLOW_TRACKING_PASSWORD", _password("rita"))
        champion = client.get_model_version_by_alias("latent-denoiser", "champion")
        model = client.get_logged_model(champion.model_id or champion.source.removeprefix("models:/"))
        run_id = champion.run_id
    seal = model.tags[SEAL_TAG]
    assert champion.tags[SEAL_TAG] == seal  # the version carries its logged model's seal
    api = f"{url}/api/2.0"
    files = f"{api}/mlflow-artifacts/artifacts/{model.experiment_id}/models/{model.model_id}/artifacts"
    python_model = requests.get(f"{files}/denoiser.py", auth=_auth("tom"), timeout=30)
    assert python_model.status_code == 200 and b"set_model" in python_model.content  # trainers read it

    # The attack, and its variants: each refused, in one line.
    for name, body in [("denoiser.py", python_model.content + b"# one more line\n"), ("artifacts/weights.pt", b"x")]:
        answer = requests.put(f"{files}/{name}", data=body, auth=_auth("tom"), timeout=30)
        _refused(answer, "tom", "upload", f"models/{model.model_id}/artifacts/{name}", "is READY")
    _refused(requests.delete(f"{files}/artifacts/weights.pt", auth=_auth("tom"), timeout=30), "tom", "delete")
    _refused(
        requests.post(f"{api}/mlflow-artifacts/mpu/create/{model.experiment_id}/models/{model.model_id}/artifacts/x",
                      json={"path": "x", "num_parts": 1}, auth=_auth("tom"), timeout=30),
        "tom", "multipart",
    )  # fmt: skip
    forged = {"tags": [{"key": SEAL_TAG, "value": "0" * 64}]}
    tags = f"{api}/mlflow/logged-models/{model.model_id}/tags"
    _refused(requests.patch(tags, json=forged, auth=_auth("tom"), timeout=30), "tom", f"set tag {SEAL_TAG}")
    _refused(requests.delete(f"{tags}/{SEAL_TAG}", auth=_auth("tom"), timeout=30), "tom", f"delete tag {SEAL_TAG}")
    reopen = {"model_id": model.model_id, "status": "LOGGED_MODEL_PENDING"}
    answer = requests.patch(f"{api}/mlflow/logged-models/{model.model_id}", json=reopen, auth=_auth("tom"), timeout=30)
    _refused(answer, "tom", "finalize again")
    version_tag = {"name": "latent-denoiser", "version": champion.version, "key": SEAL_TAG, "value": "0" * 64}
    answer = requests.post(f"{api}/mlflow/model-versions/set-tag", json=version_tag, auth=_auth("tom"), timeout=30)
    _refused(answer, "tom", f"set tag {SEAL_TAG}", "needs MANAGE")
    run_files = f"{api}/mlflow-artifacts/artifacts/{model.experiment_id}/{run_id}/artifacts"
    answer = requests.put(f"{run_files}/checkpoint/last.pt", data=b"x", auth=_auth("tom"), timeout=30)
    _refused(answer, "tom", "upload", f"run {run_id} has ended (FINISHED)")
    answer = requests.post(
        f"{api}/mlflow/runs/update", json={"run_id": run_id, "status": "RUNNING"}, auth=_auth("tom"), timeout=30
    )
    _refused(answer, "tom", f"run {run_id}", "FINISHED")
    # Nothing changed; an admin still may write (here: a note beside the finished run's files).
    assert requests.get(f"{files}/denoiser.py", auth=_auth("rita"), timeout=30).content == python_model.content
    assert requests.put(f"{run_files}/note.txt", data=b"n", auth=_auth("admin"), timeout=30).status_code == 200

    # A copy on disk that was changed refuses to load, naming the file, before any of its code runs.
    with monkeypatch.context() as as_rita, tracking_at(url, as_rita):
        as_rita.setenv("MLFLOW_TRACKING_USERNAME", "rita")
        as_rita.setenv("MLFLOW_TRACKING_PASSWORD", _password("rita"))
        copy = Path(mlflow.artifacts.download_artifacts("models:/latent-denoiser@champion", dst_path=str(work / "c")))
        assert sha256_file(copy / "MLmodel") == seal
        for name in ("denoiser.py", "artifacts/weights.pt", "MLmodel"):
            tampered = work / "tampered" / name.replace("/", "-")
            shutil.copytree(copy, tampered)
            with open(tampered / name, "ab") as f:
                f.write(b"\n# changed\n")
            with pytest.raises(ModelRefused, match=re.escape(f"refused to load the model at {tampered}: {name} ")):
                mlflow.pyfunc.load_model(str(tampered))

    # A trainer's run with checkpoints as models, interrupted after epoch 0 and resumed: it writes
    # while running, its run is sealed while it is KILLED, and its models stay sealed after.
    original = tracking_module.checkpoint_models

    def stop_after_epoch_0(*args, **kwargs):
        log = original(*args, **kwargs)

        def on_epoch(epoch, metrics):
            log(epoch, metrics)
            if epoch == 0:
                raise KeyboardInterrupt

        return on_epoch

    train = [*TRAIN, "--log_checkpoints", "true"]
    with monkeypatch.context() as interrupting:
        interrupting.setattr(tracking_module, "checkpoint_models", stop_after_epoch_0)
        stopped = invoke(train, "tom")
    assert stopped.exit_code == 130 and "ended as KILLED" in stopped.output, stopped.output
    killed = stopped.output.split("continue it with resume=")[1].split()[0]
    experiment = model.experiment_id
    with monkeypatch.context() as as_rita:
        as_rita.setenv("MLFLOW_TRACKING_USERNAME", "rita")
        as_rita.setenv("MLFLOW_TRACKING_PASSWORD", _password("rita"))
        (epoch_0,) = client.search_logged_models([experiment], filter_string=f"source_run_id = '{killed}'")
    assert epoch_0.name == "denoiser-epoch-0" and epoch_0.tags[SEAL_TAG]
    answer = requests.put(
        f"{api}/mlflow-artifacts/artifacts/{experiment}/{killed}/artifacts/x", auth=_auth("tom"), timeout=30
    )
    _refused(answer, "tom", "(KILLED)")
    resumed = invoke([*train, "--resume", killed], "tom")
    assert resumed.exit_code == 0, resumed.output
    with monkeypatch.context() as as_rita:
        as_rita.setenv("MLFLOW_TRACKING_USERNAME", "rita")
        as_rita.setenv("MLFLOW_TRACKING_PASSWORD", _password("rita"))
        run = client.get_run(killed)
        models = client.search_logged_models([experiment], filter_string=f"source_run_id = '{killed}'")
        (version,) = [v for v in client.search_model_versions("name='latent-denoiser'") if v.run_id == killed]
    assert run.info.status == "FINISHED" and run.data.tags["promotion"] in ("denied", "kept")
    assert sorted(m.name for m in models) == ["denoiser", "denoiser-epoch-0", "denoiser-epoch-1"]
    assert all(str(m.status).endswith("READY") and m.tags[SEAL_TAG] for m in models)
    assert version.tags[SEAL_TAG] == next(m for m in models if m.name == "denoiser").tags[SEAL_TAG]
    epoch_0_files = f"{api}/mlflow-artifacts/artifacts/{experiment}/models/{epoch_0.model_id}/artifacts"
    answer = requests.put(f"{epoch_0_files}/denoiser.py", data=b"x", auth=_auth("tom"), timeout=30)
    _refused(answer, "tom", "is READY")
