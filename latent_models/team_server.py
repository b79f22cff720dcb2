"""The team tracking server's app: MLflow's basic-auth app plus the project's release rules.

`mlflow server --app-name latent-models-auth` (entry point group `mlflow.app`, declared in
pyproject.toml) is MLflow's own `basic-auth` app: its users, roles, permissions, auth
database (`MLFLOW_AUTH_CONFIG_PATH`), REST API and UI, and every check it makes. This
module only adds checks after MLflow's, because MLflow asks EDIT on a registered model for
both registering a version and moving any alias, so by MLflow's rules whoever can register a
version can also move `champion` (running their code on every serving host). The additions:

- setting or deleting a protected alias (`champion`, or the comma-separated
  `LATENT_MODELS_PROTECTED_ALIASES`) needs MANAGE on the registered model;
- renaming a registered model needs MANAGE (else a trainer could rename the served model
  away, recreate the name, own it as its creator and move its `champion`);
- creating a registered model needs MANAGE on all registered models (`registered_model`,
  `*`: the release managers), since MLflow makes a creator MANAGE of what they create;
- creating an experiment needs EDIT on all experiments (`experiment`, `*`: the trainers),
  so a reader cannot start an experiment of their own and log into it.

Admins pass, as they do in MLflow. A refusal is MLflow's own 403 ("Permission denied").

Secrets: MLflow reads the bootstrap admin password from `MLFLOW_AUTH_ADMIN_PASSWORD` (or the
ini's `admin_password`) and the CSRF key from `MLFLOW_FLASK_SERVER_SECRET_KEY`; where those
are unset, this app reads them from the files named by `MLFLOW_AUTH_ADMIN_PASSWORD_FILE` and
`MLFLOW_FLASK_SERVER_SECRET_KEY_FILE` (a Docker / systemd secret). There is no default.

Imports MLflow only (no torch): a server host needs `mlflow[auth]`, a database driver and
`pip install --no-deps` of this package.
"""

from __future__ import annotations

import os
from pathlib import Path

PROTECTED_ALIASES_ENV = "LATENT_MODELS_PROTECTED_ALIASES"
SECRET_FILE_ENVS = {
    "MLFLOW_AUTH_ADMIN_PASSWORD": "MLFLOW_AUTH_ADMIN_PASSWORD_FILE",
    "MLFLOW_FLASK_SERVER_SECRET_KEY": "MLFLOW_FLASK_SERVER_SECRET_KEY_FILE",
}


def protected_aliases() -> set[str]:
    return {a.strip() for a in os.environ.get(PROTECTED_ALIASES_ENV, "champion").split(",") if a.strip()}


def load_secret_files() -> None:
    """Set each secret variable from its `*_FILE` variable's file where the variable is unset."""
    for var, file_var in SECRET_FILE_ENVS.items():
        path = os.environ.get(file_var)
        if path and not os.environ.get(var):
            value = Path(path).read_text().strip()
            if not value:
                raise RuntimeError(f"{file_var}={path} is empty")
            os.environ[var] = value


def _route(path: str, method: str) -> str | None:
    """Which guarded operation a REST or ajax request is, if any."""
    if "/mlflow/" not in path or not ("/api/" in path or "/ajax-api/" in path):
        return None
    tail = path[path.index("/mlflow/") :]
    return {
        ("/mlflow/registered-models/alias", "POST"): "set_alias",
        ("/mlflow/registered-models/alias", "DELETE"): "delete_alias",
        ("/mlflow/registered-models/rename", "POST"): "rename",
        ("/mlflow/registered-models/create", "POST"): "create_model",
        ("/mlflow/experiments/create", "POST"): "create_experiment",
    }.get((tail.rstrip("/"), method))


def _release_rules():
    """Flask before-request hook, run after MLflow's own (which has authenticated the caller
    and applied MLflow's permission check): None lets the request through."""
    from flask import request
    from mlflow.server import auth
    from mlflow.server.auth.permissions import (
        RESOURCE_TYPE_EXPERIMENT,
        RESOURCE_TYPE_REGISTERED_MODEL,
        RESOURCE_TYPE_WORKSPACE,
    )
    from mlflow.server.auth.requirements import Requirement

    operation = _route(request.path, request.method)
    if operation is None or auth.is_unprotected_route(request.path):
        return None
    authorization = auth.authenticate_request()
    if not hasattr(authorization, "username"):  # a 401 response: MLflow's hook has answered already
        return authorization
    if auth.sender_is_admin():
        return None
    if operation in ("set_alias", "delete_alias"):
        if auth._get_request_param("alias") not in protected_aliases():
            return None
        allowed = auth._get_permission_from_registered_model_or_prompt_name().can_manage
    elif operation == "rename":
        allowed = auth._get_permission_from_registered_model_or_prompt_name().can_manage
    elif operation == "create_model" and auth._registered_model_or_prompt_target() is not None:
        return None  # exists: MLflow answers RESOURCE_ALREADY_EXISTS (mlflow.register_model expects it)
    else:
        wildcard, action = (
            (RESOURCE_TYPE_REGISTERED_MODEL, "manage")
            if operation == "create_model"
            else (RESOURCE_TYPE_EXPERIMENT, "update")
        )
        allowed = auth.authorize(
            authorization.username, (RESOURCE_TYPE_WORKSPACE, "*"), [Requirement(wildcard, "*", action)]
        )
    return None if allowed else auth.make_forbidden_response()


def create_app(app=None):
    """The `mlflow.app` factory: MLflow's basic-auth app, then the release rules."""
    load_secret_files()
    from mlflow.server import app as flask_app
    from mlflow.server.auth import create_app as basic_auth_app

    flask_app = app or flask_app
    served = basic_auth_app(flask_app)  # registers MLflow's before-request hook first
    flask_app.before_request(_release_rules)  # so this one runs after it
    return served
