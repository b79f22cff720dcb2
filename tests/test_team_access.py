"""team_access without a server: secrets, the auth ini, refusals as one line. The roles
themselves are checked against a real basic-auth server in tests/test_team_server.py."""

import pytest
from mlflow.exceptions import MlflowException, RestException

from latent_models import team_access, team_server
from latent_models.team_access import AccessError, describe_refusal, read_secret, refusal_status


def test_secret_from_environment_or_file_never_a_default(tmp_path, monkeypatch):
    monkeypatch.delenv("X_PASSWORD", raising=False)
    monkeypatch.delenv("X_PASSWORD_FILE", raising=False)
    with pytest.raises(AccessError, match="set X_PASSWORD, or X_PASSWORD_FILE"):
        read_secret("X_PASSWORD")
    secret = tmp_path / "secret"
    secret.write_text("from-a-file-123\n")
    monkeypatch.setenv("X_PASSWORD_FILE", str(secret))
    assert read_secret("X_PASSWORD") == "from-a-file-123"
    monkeypatch.setenv("X_PASSWORD", "from-the-env-1")
    assert read_secret("X_PASSWORD") == "from-the-env-1"
    monkeypatch.setenv("X_PASSWORD", "short")
    with pytest.raises(AccessError, match="shorter than 12"):
        read_secret("X_PASSWORD")


def test_server_app_reads_secret_files(tmp_path, monkeypatch):
    for var in team_server.SECRET_FILE_ENVS:  # set, then removed: monkeypatch removes what the app sets
        monkeypatch.setenv(var, "")
        monkeypatch.delenv(var)
    (tmp_path / "admin").write_text("admin-password-1\n")
    monkeypatch.setenv("MLFLOW_AUTH_ADMIN_PASSWORD_FILE", str(tmp_path / "admin"))
    team_server.load_secret_files()
    import os

    assert os.environ["MLFLOW_AUTH_ADMIN_PASSWORD"] == "admin-password-1"
    assert "MLFLOW_FLASK_SERVER_SECRET_KEY" not in os.environ


def test_auth_config_holds_no_password(tmp_path):
    text = team_access.write_auth_config(tmp_path / "auth.ini", "postgresql://db/mlflow_auth").read_text()
    assert "database_uri = postgresql://db/mlflow_auth" in text and "default_permission = READ" in text
    assert "admin_password =" not in text


@pytest.mark.parametrize("ttl", [60, 0])
def test_auth_config_sets_the_credential_cache_that_mlflow_reads(tmp_path, monkeypatch, ttl):
    """MLflow's own reader gets the TTL (its default, 0, re-checks scrypt on every request)."""
    from mlflow.server.auth.config import read_auth_config

    ini = team_access.write_auth_config(tmp_path / "auth.ini", "sqlite:///auth.db", auth_cache_ttl_seconds=ttl)
    monkeypatch.setenv("MLFLOW_AUTH_CONFIG_PATH", str(ini))
    assert read_auth_config().auth_cache_ttl_seconds == ttl
    with pytest.raises(ValueError, match="auth_cache_ttl_seconds must be >= 0"):
        team_access.write_auth_config(tmp_path / "bad.ini", "sqlite:///auth.db", auth_cache_ttl_seconds=-1)


def test_guarded_routes():
    route = team_server._route
    assert route("/api/2.0/mlflow/registered-models/alias", "POST") == "set_alias"
    assert route("/ajax-api/2.0/mlflow/registered-models/alias", "DELETE") == "delete_alias"
    assert route("/api/2.0/mlflow/registered-models/rename", "POST") == "rename"
    assert route("/api/2.0/mlflow/registered-models/create", "POST") == "create_model"
    assert route("/api/2.0/mlflow/experiments/create", "POST") == "create_experiment"
    assert route("/api/2.0/mlflow/registered-models/get", "GET") is None
    assert route("/api/2.0/mlflow/runs/create", "POST") is None


def test_write_once_judges_the_canonical_artifact_path(monkeypatch):
    """Which artifact writes the team server seals (docs/write-once.md); the server itself is
    checked in tests/test_team_server.py."""
    write = team_server._artifact_write
    model_file = "1/models/m-a/artifacts/denoiser.py"
    assert write(f"/api/2.0/mlflow-artifacts/artifacts/{model_file}", "PUT") == ("upload", model_file)
    assert write(f"/ajax-api/2.0/mlflow-artifacts/artifacts/{model_file}", "DELETE") == ("delete", model_file)
    assert write("/api/2.0/mlflow-artifacts/mpu/create/1/r/x", "POST") == ("start a multipart upload of", "1/r/x")
    assert write(f"/api/2.0/mlflow-artifacts/artifacts/{model_file}", "GET") is None
    assert write("/api/2.0/mlflow/runs/update", "POST") is None

    models = {"m-a": "READY", "m-b": "PENDING", "m-c": "FAILED"}
    runs = {"a" * 32: "FINISHED", "b" * 32: "RUNNING", "c" * 32: "KILLED"}
    monkeypatch.setattr(team_server, "_logged_model_status", models.get)
    monkeypatch.setattr(team_server, "_run_status", runs.get)
    sealed = team_server.sealed_artifact
    assert sealed(model_file) == "logged model m-a is READY"
    assert sealed("1/./models//m-a/artifacts/weights.pt") == "logged model m-a is READY"  # as MLflow writes it
    assert sealed("workspaces/w/1/models/m-a/artifacts/x") == "logged model m-a is READY"
    assert sealed("1/models/m-c/artifacts/x") == "logged model m-c is FAILED"
    assert sealed("1/models/m-b/artifacts/x") is None  # still being logged: MLflow's rules
    assert sealed("1") and sealed("1/models")  # a delete there removes sealed files
    assert sealed(f"1/{'a' * 32}/artifacts/checkpoint/last.pt") == f"run {'a' * 32} has ended (FINISHED)"
    assert sealed(f"1/{'c' * 32}/artifacts/x") == f"run {'c' * 32} has ended (KILLED)"
    assert sealed(f"1/{'b' * 32}/artifacts/checkpoint/last.pt") is None  # a running run: training goes on
    assert sealed("1/models/m-x/../m-a/x") is None  # not canonical: MLflow refuses it itself


def test_refusals_name_user_action_and_resource(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "rita")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow:5000")
    forbidden = MlflowException(
        "API request to endpoint /api/2.0/mlflow/runs/create failed with error code 403 != 200. "
        "Response body: 'Permission denied'",
        error_code="PERMISSION_DENIED",
    )
    assert refusal_status(forbidden) == 403
    line = describe_refusal(forbidden, {"experiment": "team", "registered_model": "latent-denoiser"})
    assert line == (
        "permission denied (HTTP 403) by http://mlflow:5000: user 'rita' may not create a run in experiment 'team'"
    )
    assert "\n" not in line
    alias = MlflowException(
        "API request to endpoint /api/2.0/mlflow/registered-models/alias failed with error code "
        "403 != 200. Response body: 'Permission denied'",
        error_code="PERMISSION_DENIED",
    )
    assert "may not move an alias of registered model 'latent-denoiser'" in describe_refusal(
        alias, {"experiment": "team", "registered_model": "latent-denoiser"}
    )
    monkeypatch.delenv("MLFLOW_TRACKING_USERNAME")
    unauthenticated = MlflowException(
        "API request to endpoint /api/2.0/mlflow/experiments/get-by-name failed with "
        "error code 401 != 200. Response body: 'You are not authenticated.'",
        error_code="UNAUTHENTICATED",
    )
    line = describe_refusal(unauthenticated, {"experiment": "team"})
    assert line.startswith("not authenticated (HTTP 401)") and "no user" in line and "experiment 'team'" in line
    assert describe_refusal(RestException({"error_code": "RESOURCE_DOES_NOT_EXIST", "message": "x"})) is None
    assert describe_refusal(ValueError("x")) is None
