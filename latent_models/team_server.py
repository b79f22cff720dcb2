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

Write-once (docs/write-once.md): MLflow judges an artifact upload under
`<experiment>/models/<model id>/` or `<experiment>/<run id>/` as an update of that logged model or
run, with the experiment's EDIT as fallback (which every trainer holds), and the models are logged
from code. So, for everyone but admins, with a 403 of one line naming user, action and path:

- no artifact upload, multipart upload or delete under a logged model that is no longer PENDING
  (READY, or FAILED), or under a run that has ended (FINISHED, FAILED or KILLED), nor a delete of
  an experiment's artifact root or its `models/` folder (both hold sealed files); a RUNNING run and
  a PENDING logged model keep MLflow's rules (training, checkpoints, `log_checkpoints`);
- a logged model no longer PENDING cannot be finalized again, nor its seal tag
  (`latent_models_seal.SEAL_TAG`) set or deleted; a FINISHED run cannot be set running again (a
  KILLED or FAILED one can: that is resume);
- a registered version's seal tag is set with the version (`model-versions/create`), and only to
  its logged model's seal; setting or deleting it afterwards needs MANAGE, as `champion` does.

Secrets: MLflow reads the bootstrap admin password from `MLFLOW_AUTH_ADMIN_PASSWORD` (or the
ini's `admin_password`) and the CSRF key from `MLFLOW_FLASK_SERVER_SECRET_KEY`; where those
are unset, this app reads them from the files named by `MLFLOW_AUTH_ADMIN_PASSWORD_FILE` and
`MLFLOW_FLASK_SERVER_SECRET_KEY_FILE` (a Docker / systemd secret). There is no default.

Imports MLflow only (no torch): a server host needs `mlflow[auth]`, a database driver and
`pip install --no-deps` of this package.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from latent_models_seal import SEAL_TAG

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


# --- write-once ------------------------------------------------------------------------------

ENDED_RUN = ("FINISHED", "FAILED", "KILLED")
_ARTIFACT_WRITES = {  # route family after /mlflow-artifacts/ -> (method, what is asked)
    "artifacts/": {"PUT": "upload", "DELETE": "delete"},
    "mpu/create/": {"POST": "start a multipart upload of"},
    "mpu/complete/": {"POST": "complete a multipart upload of"},
    "mpu/abort/": {"POST": "abort a multipart upload of"},
}


def _artifact_write(path: str, method: str) -> tuple[str, str] | None:
    """(what is asked, the artifact path) of an artifact-proxy write, else None."""
    marker = "/mlflow-artifacts/"
    if marker not in path or not ("/api/2.0/" in path or "/ajax-api/2.0/" in path):
        return None
    tail = path[path.index(marker) + len(marker) :]
    for family, actions in _ARTIFACT_WRITES.items():
        if tail.startswith(family) and method in actions:
            return actions[method], tail[len(family) :]
    return None


def _store():
    from mlflow.server.handlers import _get_tracking_store

    return _get_tracking_store()


def _logged_model_status(model_id: str) -> str | None:
    from mlflow.exceptions import MlflowException

    try:
        status = _store().get_logged_model(model_id).status
    except MlflowException:
        return None
    return str(getattr(status, "name", status)).rsplit(".", 1)[-1]


def _run_status(run_id: str) -> str | None:
    from mlflow.exceptions import MlflowException

    try:
        return _store().get_run(run_id).info.status
    except MlflowException:
        return None


def sealed_artifact(artifact_path: str) -> str | None:
    """Why `artifact_path` (relative to the served artifact root) is sealed, else None.

    Judged on MLflow's canonical form of the path (the one its handler writes to); a path MLflow
    cannot canonicalize is MLflow's to refuse. `<exp>/models/<id>/...`: the logged model's files;
    `<exp>/<run id>/...`: the run's; `<exp>` and `<exp>/models` themselves: every model below."""
    from mlflow.exceptions import MlflowException
    from mlflow.utils.uri import validate_path_is_safe

    try:
        canonical = validate_path_is_safe(artifact_path)
    except MlflowException:
        return None
    parts = [p for p in canonical.split("/") if p not in ("", ".")]
    if parts[:1] == ["workspaces"]:
        parts = parts[2:]
    if not parts or not parts[0].isdigit():
        return None
    rest = parts[1:]
    if not rest or rest == ["models"]:
        return f"it holds the files of the logged models of experiment {parts[0]}"
    if rest[0] == "models":
        status = _logged_model_status(rest[1])
        return f"logged model {rest[1]} is {status}" if status not in (None, "PENDING") else None
    status = _run_status(rest[0])
    return f"run {rest[0]} has ended ({status})" if status in ENDED_RUN else None


def _refusal(user: str, action: str, what: str, reason: str):
    """MLflow's 403, as one line naming the user, the action and the path, and why."""
    from flask import make_response

    response = make_response(
        f"Permission denied: user {user!r} may not {action} {what}: {reason} (write-once: only an admin may)"
    )
    response.status_code = 403
    response.mimetype = "text/plain"
    return response


def _model_version_seal_allowed(auth) -> bool | str:
    """True, or why a new version's seal tag is refused: it must be its logged model's seal."""
    tags = {}
    for tag in _get_param(auth, "tags") or []:
        if isinstance(tag, dict):
            tags[tag.get("key")] = tag.get("value")
    if SEAL_TAG not in tags:
        return True
    model_id = _get_param(auth, "model_id") or ""
    source = _get_param(auth, "source") or ""
    if not model_id and source.startswith("models:/m-"):
        model_id = source[len("models:/") :].split("/", 1)[0]
    from mlflow.exceptions import MlflowException

    try:
        sealed = _store().get_logged_model(model_id).tags.get(SEAL_TAG) if model_id else None
    except MlflowException:
        sealed = None
    if sealed is None or sealed != tags[SEAL_TAG]:
        return f"tag {SEAL_TAG} must be the seal of its logged model {model_id or '(none)'}"
    return True


def _get_param(auth, name: str):
    from mlflow.exceptions import MlflowException

    try:
        return auth._get_request_param(name)
    except MlflowException:
        return None


def _write_once_rules():
    """Flask before-request hook, after MLflow's and the release rules: None lets it through."""
    from flask import request
    from mlflow.server import auth

    path, method = request.path, request.method
    if "/mlflow-artifacts/" not in path and "/mlflow/" not in path:
        return None
    if auth.is_unprotected_route(path):
        return None
    write = _artifact_write(path, method)
    tail = path[path.index("/mlflow/") :].rstrip("/") if "/mlflow/" in path else ""
    if write is None and not (
        (tail.startswith("/mlflow/logged-models/") and method in ("PATCH", "DELETE"))
        or tail in ("/mlflow/runs/update", "/mlflow/model-versions/set-tag", "/mlflow/model-versions/delete-tag")
        or tail == "/mlflow/model-versions/create"
    ):
        return None
    authorization = auth.authenticate_request()
    if not hasattr(authorization, "username"):
        return authorization
    if auth.sender_is_admin():
        return None
    user = authorization.username
    if write is not None:
        action, artifact_path = write
        artifact_path = (request.view_args or {}).get("artifact_path") or artifact_path
        reason = sealed_artifact(artifact_path)
        return _refusal(user, action, f"artifact {artifact_path}", reason) if reason else None
    if tail.startswith("/mlflow/logged-models/"):
        parts = tail[len("/mlflow/logged-models/") :].split("/")
        model_id = parts[0]
        status = None if model_id == "search" else _logged_model_status(model_id)
        if status in (None, "PENDING"):
            return None
        what, why = f"logged model {model_id}", f"it is {status}"
        if len(parts) == 1 and method == "PATCH":
            return _refusal(user, "finalize again", what, why)
        if parts[1:] == ["tags"] and method == "PATCH":
            keys = {t.get("key") for t in (_get_param(auth, "tags") or []) if isinstance(t, dict)}
            if SEAL_TAG in keys:
                return _refusal(user, f"set tag {SEAL_TAG} of", what, why)
        if len(parts) == 3 and parts[1] == "tags" and method == "DELETE" and parts[2] == SEAL_TAG:
            return _refusal(user, f"delete tag {SEAL_TAG} of", what, why)
        return None
    if tail == "/mlflow/runs/update":
        run_id = _get_param(auth, "run_id") or _get_param(auth, "run_uuid")
        status = _get_param(auth, "status")
        if run_id and status and status != "FINISHED" and _run_status(run_id) == "FINISHED":
            return _refusal(user, f"set status {status} of", f"run {run_id}", "it has FINISHED")
        return None
    if tail == "/mlflow/model-versions/create":
        allowed = _model_version_seal_allowed(auth)
        name = _get_param(auth, "name")
        return None if allowed is True else _refusal(user, "register", f"a version of {name!r}", allowed)
    if _get_param(auth, "key") == SEAL_TAG:  # set-tag / delete-tag of a version
        if not auth._get_permission_from_registered_model_or_prompt_name().can_manage:
            action = "set" if tail.endswith("set-tag") else "delete"
            name, version = _get_param(auth, "name"), _get_param(auth, "version")
            return _refusal(user, f"{action} tag {SEAL_TAG} of", f"{name!r} version {version}", "needs MANAGE")
    return None


def _add_write_once_middleware(fastapi_app) -> None:
    """Artifact uploads (PUT) are served by MLflow's FastAPI app, not Flask: the same rule there.
    Added after MLflow's permission middleware, so it runs before it (Starlette runs the last
    added first): it authenticates as MLflow's does and leaves everything else to it."""
    from mlflow.server import auth
    from mlflow.server.asgi_utils import get_routed_asgi_path
    from starlette.responses import PlainTextResponse

    @fastapi_app.middleware("http")
    async def write_once(request, call_next):
        path = get_routed_asgi_path(request)
        write = _artifact_write(path, request.method)
        native = getattr(auth, "_is_native_fastapi_proxy_artifact_path", None)
        if write is None or (native is not None and not native(path, request.method)):
            return await call_next(request)  # not an upload served here; Flask's hook has the rest
        user = await asyncio.to_thread(auth._authenticate_fastapi_request, request)
        if user is None or user.is_admin:
            return await call_next(request)  # MLflow answers the unauthenticated; admins pass
        action, artifact_path = write
        reason = await asyncio.to_thread(sealed_artifact, artifact_path)
        if reason is None:
            return await call_next(request)
        return PlainTextResponse(
            f"Permission denied: user {user.username!r} may not {action} artifact {artifact_path}: {reason} "
            "(write-once: only an admin may)",
            status_code=403,
        )


def create_app(app=None):
    """The `mlflow.app` factory: MLflow's basic-auth app, then the release and write-once rules."""
    load_secret_files()
    from mlflow.server import app as flask_app
    from mlflow.server.auth import create_app as basic_auth_app

    flask_app = app or flask_app
    served = basic_auth_app(flask_app)  # registers MLflow's before-request hook first
    flask_app.before_request(_release_rules)  # so this one runs after it
    flask_app.before_request(_write_once_rules)
    if served is not flask_app:  # uvicorn: MLflow's FastAPI app serves uploads itself
        _add_write_once_middleware(served)
    return served
