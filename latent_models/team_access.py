"""Who may do what on the team tracking server: three roles on MLflow's basic-auth, set up
idempotently through MLflow's own auth client, and the one-line message for a refusal.

Roles (MLflow RBAC roles in the `default` workspace, wildcard grants):

- `readers`: READ on every experiment and registered model (see runs, models; serve them);
- `trainers`: EDIT on every experiment (create experiments and runs, log into them) and on
  every registered model (register versions, tag them, set `candidate`);
- `release-managers`: READ on experiments, MANAGE on every registered model: only they move
  `champion` (and create or rename registered models). MLflow alone asks EDIT for moving any
  alias; `latent_models.team_server` (the `latent-models-auth` server app) asks MANAGE for
  `champion`.

Nothing about models here: only MLflow's tracking and auth clients.
"""

from __future__ import annotations

import os
import re
import secrets
from pathlib import Path

from latent_models.errors import AccessDenied, AccessError

WORKSPACE = "default"  # MLflow's workspace when workspaces are off
ROLES: dict[str, tuple[tuple[str, str, str], ...]] = {
    "readers": (("experiment", "*", "READ"), ("registered_model", "*", "READ")),
    "trainers": (("experiment", "*", "EDIT"), ("registered_model", "*", "EDIT")),
    "release-managers": (("experiment", "*", "READ"), ("registered_model", "*", "MANAGE")),
}
# Created by `team-access apply` (as admin), so that no trainer becomes one's creator (MANAGE).
PROJECT_MODELS = ("latent-denoiser", "latent-vae", "latent-mnist-classifier", "latent-fashion-mnist-classifier")
LEGACY_DEFAULT_ADMIN_PASSWORD = "password1234"  # what MLflow's basic_auth.ini shipped before 3.x
MIN_PASSWORD = 12  # MLflow's password policy


# --- credentials ----------------------------------------------------------------------


def current_user() -> str | None:
    """The user MLflow sends: MLFLOW_TRACKING_USERNAME, else ~/.mlflow/credentials."""
    from mlflow.utils.credentials import read_mlflow_creds

    return read_mlflow_creds().username


def read_secret(value_env: str, file_env: str | None = None, what: str = "password") -> str:
    """A secret from the environment variable `value_env`, else from the file named by
    `file_env` (`<value_env>_FILE`); never a default. At least 12 characters."""
    file_env = file_env or f"{value_env}_FILE"
    value = os.environ.get(value_env)
    if not value and os.environ.get(file_env):
        path = Path(os.environ[file_env]).expanduser()
        try:
            value = path.read_text().strip()
        except OSError as exc:
            raise AccessError(f"cannot read {what} file {path} ({file_env}): {exc.strerror}") from None
    if not value:
        raise AccessError(f"no {what}: set {value_env}, or {file_env} to a file holding it")
    if len(value) < MIN_PASSWORD:
        raise AccessError(f"the {what} from {value_env}/{file_env} is shorter than {MIN_PASSWORD} characters")
    return value


def write_auth_config(
    path: str | Path,
    database_uri: str,
    admin_username: str = "admin",
    default_permission: str = "READ",
    auth_cache_ttl_seconds: int = 60,
) -> Path:
    """MLflow's auth ini (`MLFLOW_AUTH_CONFIG_PATH`): the auth database and the admin's name,
    and no password (MLflow takes it from MLFLOW_AUTH_ADMIN_PASSWORD at first start).

    MLflow checks the password of every request with scrypt (about 0.15 s of server CPU): the
    auth-server test (a small training run, a served model) took 150 s instead of 57. Its
    credential cache skips the check for a (user, password) seen within
    `auth_cache_ttl_seconds`. A password changed through the API is dropped from the cache of
    the worker that handled the change at once, and from the other workers within the TTL;
    0 turns the cache off."""
    if auth_cache_ttl_seconds < 0:
        raise ValueError(f"auth_cache_ttl_seconds must be >= 0, got {auth_cache_ttl_seconds}")
    path = Path(path)
    path.write_text(
        "\n".join(
            [
                "[mlflow]",
                f"default_permission = {default_permission}",
                f"database_uri = {database_uri}",
                f"admin_username = {admin_username}",
                "# no admin_password here: MLFLOW_AUTH_ADMIN_PASSWORD (or _FILE) gives it at first start",
                "authorization_function = mlflow.server.auth:authenticate_request_basic_auth",
                "# a checked (user, password) is trusted this long (no scrypt); other workers see a change within it",
                f"auth_cache_ttl_seconds = {auth_cache_ttl_seconds}",
                "",
            ]
        )
    )
    return path


# --- refusals as one line ------------------------------------------------------------

_ENDPOINT = re.compile(r"endpoint (\S+) failed with error code (\d+)")
# endpoint suffix -> (what was asked, which resource kind it concerns)
_ACTIONS = (
    ("/experiments/create", "create experiment", "experiment"),
    ("/experiments/", "read experiment", "experiment"),
    ("/runs/create", "create a run in experiment", "experiment"),
    ("/runs/", "log to a run in experiment", "experiment"),
    ("/logged-models", "log a model in experiment", "experiment"),
    ("/mlflow-artifacts/", "write artifacts of experiment", "experiment"),
    ("/registered-models/create", "create registered model", "registered_model"),
    ("/registered-models/alias", "move an alias of registered model", "registered_model"),
    ("/registered-models/rename", "rename registered model", "registered_model"),
    ("/model-versions/create", "register a version of", "registered_model"),
    ("/model-versions/set-tag", "tag a version of", "registered_model"),
    ("/registered-models/", "read registered model", "registered_model"),
    ("/model-versions/", "read versions of registered model", "registered_model"),
    ("/users/", "manage users", None),
    ("/roles/", "manage roles", None),
)


def refusal_status(exc: BaseException) -> int | None:
    """401 or 403 when `exc` is the tracking server refusing a request, else None."""
    from mlflow.exceptions import MlflowException

    if isinstance(exc, AccessDenied):
        return 403
    if isinstance(exc, MlflowException):
        status = exc.get_http_status_code()
        if status in (401, 403):
            return status
        match = _ENDPOINT.search(exc.message or "")
        if match and match.group(2) in ("401", "403"):
            return int(match.group(2))
    response = getattr(exc, "response", None)  # requests.HTTPError from an artifact upload
    if response is not None and getattr(response, "status_code", None) in (401, 403):
        return response.status_code
    return None


def describe_refusal(
    exc: BaseException, resources: dict[str, str] | None = None, action: str | None = None, resource: str | None = None
) -> str | None:
    """One line for a 401/403 from the tracking server, naming the user, the action and the
    resource; None when `exc` is something else. `resources` (experiment, registered_model ->
    name) names the resource when the request's endpoint tells only its kind; `action` and
    `resource` override both."""
    status = refusal_status(exc)
    if status is None:
        return None
    if isinstance(exc, AccessDenied):
        return str(exc)
    import mlflow

    user = current_user()
    message = getattr(exc, "message", "") or str(exc)
    match = _ENDPOINT.search(message)
    endpoint = match.group(1) if match else ""
    if endpoint.startswith("http"):
        endpoint = "/" + endpoint.split("://", 1)[1].partition("/")[2]
    if action is None or resource is None:
        guessed_action, kind = next(
            ((a, k) for suffix, a, k in _ACTIONS if suffix in endpoint),
            (f"call {endpoint or 'the tracking server'}", None),
        )
        action = action or guessed_action
        if resource is None:
            name = (resources or {}).get(kind) if kind else None
            resource = repr(name) if name else (f"({endpoint})" if kind else "")
    where = mlflow.get_tracking_uri()
    if status == 401:
        who = f"user {user!r}" if user else "no user (set MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD)"
        return (
            f"not authenticated (HTTP 401) by {where}: {who} may not {action} {resource}; "
            "check the user name and password"
        ).replace("  ", " ")
    return f"permission denied (HTTP 403) by {where}: user {user!r} may not {action} {resource}".rstrip()


# --- setting the roles up --------------------------------------------------------------


def _auth_client(tracking_uri: str):
    from mlflow.server import get_app_client

    return get_app_client("basic-auth", tracking_uri=tracking_uri)


def _exists(fetch) -> bool:
    from mlflow.exceptions import MlflowException

    try:
        fetch()
        return True
    except MlflowException as exc:
        if exc.error_code == "RESOURCE_DOES_NOT_EXIST" or exc.get_http_status_code() == 404:
            return False
        raise


def check_admin(tracking_uri: str) -> str:
    """The caller (MLflow credentials) is an admin of the server, and the admin password
    MLflow used to ship is refused. Returns the admin's user name."""
    import requests

    user = current_user()
    if not user:
        raise AccessError(
            "no credentials: set MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD "
            "(or ~/.mlflow/credentials) to the server's admin"
        )
    me = _auth_client(tracking_uri).get_user(user)
    if not me.is_admin:
        raise AccessDenied(
            f"permission denied: user {user!r} may not set up team access on {tracking_uri} (needs an admin)"
        )
    legacy = requests.get(
        f"{tracking_uri.rstrip('/')}/api/2.0/mlflow/users/get",
        params={"username": user},
        auth=(user, LEGACY_DEFAULT_ADMIN_PASSWORD),
        timeout=30,
    )
    if legacy.status_code != 401:
        raise AccessError(
            f"admin {user!r} still accepts MLflow's old default password: rotate it now "
            "(latent-models team-access password)"
        )
    return user


def apply(
    tracking_uri: str,
    members: dict[str, list[str]],
    password_dir: str | Path | None = None,
    models: tuple[str, ...] = PROJECT_MODELS,
) -> list[str]:
    """Make the server match: the three roles with their grants, each listed user existing and
    holding exactly the listed project roles, the `models` registered (by the admin). Idempotent;
    users not listed are left alone. A new user's password is read from `<password_dir>/<user>`;
    where that file is missing a random one is written there (mode 0600) to hand over.
    Returns one line per change."""
    from mlflow.tracking import MlflowClient

    unknown = sorted(set(members) - set(ROLES))
    if unknown:
        raise AccessError(f"unknown role(s) {', '.join(unknown)}; roles: {', '.join(ROLES)}")
    check_admin(tracking_uri)
    client = _auth_client(tracking_uri)
    changes: list[str] = []

    roles = {r.name: r for r in client.list_roles(WORKSPACE)}
    for name, grants in ROLES.items():
        if name not in roles:
            roles[name] = client.create_role(WORKSPACE, name, f"latent-models {name}")
            changes.append(f"created role {name}")
        have = {(p.resource_type, p.resource_pattern): p for p in client.list_role_permissions(roles[name].id)}
        for resource_type, pattern, permission in grants:
            held = have.get((resource_type, pattern))
            if held is None:
                client.add_role_permission(roles[name].id, resource_type, pattern, permission)
                changes.append(f"role {name}: {permission} on {resource_type} {pattern}")
            elif held.permission != permission:
                client.update_role_permission(held.id, permission)
                changes.append(f"role {name}: {held.permission} -> {permission} on {resource_type} {pattern}")

    wanted: dict[str, set[str]] = {}
    for role, users in members.items():
        for user in users:
            wanted.setdefault(user, set()).add(role)
    for user, user_roles in sorted(wanted.items()):
        if not _exists(lambda user=user: client.get_user(user)):
            client.create_user(user, _new_password(user, password_dir))
            changes.append(f"created user {user}")
        held = {r.name for r in client.list_user_roles(user) if r.name in ROLES}
        for role in sorted(user_roles - held):
            client.assign_role(user, roles[role].id)
            changes.append(f"{user}: joined {role}")
        for role in sorted(held - user_roles):
            client.unassign_role(user, roles[role].id)
            changes.append(f"{user}: left {role}")

    registry = MlflowClient(tracking_uri, registry_uri=tracking_uri)
    for name in models:
        if not _exists(lambda name=name: registry.get_registered_model(name)):
            registry.create_registered_model(name)
            changes.append(f"registered model {name} created")
    return changes


def _new_password(user: str, password_dir: str | Path | None) -> str:
    if password_dir is None:
        raise AccessError(
            f"user {user!r} does not exist: give --password-dir, a folder holding a file "
            f"{user!r} with their password (or where one is written)"
        )
    path = Path(password_dir).expanduser() / user
    if path.is_file():
        password = path.read_text().strip()
        if len(password) < MIN_PASSWORD:
            raise AccessError(f"password in {path} is shorter than {MIN_PASSWORD} characters")
        return password
    path.parent.mkdir(parents=True, exist_ok=True)
    password = secrets.token_urlsafe(18)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(password + "\n")
    return password


def set_password(tracking_uri: str, username: str, password: str) -> None:
    """Rotate `username`'s password: an admin sets anyone's; a user changing their own (the
    admin too) sends the current one, their MLflow credentials' password (MLflow's rule)."""
    from mlflow.utils.credentials import read_mlflow_creds

    if len(password) < MIN_PASSWORD:
        raise AccessError(f"the new password is shorter than {MIN_PASSWORD} characters")
    creds = read_mlflow_creds()
    current = creds.password if creds.username == username else None
    _auth_client(tracking_uri).update_user_password(username, password, current_password=current)
