"""Write-once models: the manifest a logged model carries, and the check that runs before its code.

A latent-models model is logged from code: loading it executes Python from its own folder (the
entry script and the `latent_models` copy in `code/`). So whoever can change a version's files
decides what runs on every host that loads it. This package, installed beside `latent_models` but
never shipped inside a model (`code_paths` copies `latent_models/` only), is what checks them:

- at logging (`seal_folder`), every file of the model folder but `MLmodel` gets its SHA-256 in
  the MLmodel's `metadata.latent_models_manifest`; the pyfunc flavor's `loader_module` becomes
  this module, and MLflow's `code` key is renamed `latent_models_code`, so that MLflow does not
  put the model's `code/` first on `sys.path` before this module is imported;
- the SHA-256 of that MLmodel file (`mlmodel_digest`) is the logged model's tag `SEAL_TAG` and the
  registered version's tag of the same name (the team server seals both: docs/write-once.md);
- at load (`mlflow.pyfunc.load_model`, `mlflow models serve`, `spark_udf`: all go through
  `_load_pyfunc` here), the MLmodel is checked against the tag on the tracking server (when one
  is configured and knows the model), every file against the manifest (none missing, changed or
  added), and only then is `code/` put on `sys.path` and MLflow's own models-from-code loader
  called. A mismatch is a `ModelRefused` (an MlflowException) of one line naming the file.

Models logged before this existed (MLflow's loader, no manifest) load as before, with one printed
warning, and a sealed model whose MLmodel was rewritten to MLflow's loader is refused
(`watch_pyfunc_loads`): in every process that imports mlflow where this package is installed,
since MLflow itself imports it through the plugin in mlflow_plugin.py. Imports the standard
library and `mlflow.exceptions` only at import (no torch; the team server imports the names; MLflow
imports it from inside `import mlflow`).
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.abc
import os
import sys
from pathlib import Path

from mlflow.exceptions import MlflowException

MLMODEL = "MLmodel"
MANIFEST_KEY = "latent_models_manifest"  # in the MLmodel's metadata: {"sha256": {relative path: hex}}
SEAL_TAG = "latent_models.mlmodel_sha256"  # logged-model tag and registered-version tag: SHA-256 of MLmodel
CODE_KEY = "latent_models_code"  # the pyfunc conf's code folder, under a name MLflow does not act on
LOADER = __name__  # the pyfunc conf's loader_module of a sealed model
DELEGATE = "mlflow.pyfunc.loaders.code_model"  # MLflow's models-from-code loader, called after the check
# Files MLflow itself adds to a downloaded model folder (data, never executed): not in the manifest.
MLFLOW_ADDED = frozenset({"registered_model_meta"})
BYTECODE_DIR = "__pycache__"
PYFUNC = "mlflow.pyfunc"


class ModelRefused(MlflowException):
    """A model folder that does not match its manifest or its sealed digest (one line)."""


def _refused(folder: Path, problem: str) -> ModelRefused:
    return ModelRefused(f"refused to load the model at {folder}: {problem}")


def sha256_file(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _files(folder: Path) -> list[str]:
    """Every file under `folder` (relative, '/'-separated) but MLmodel, MLflow's own additions and
    bytecode caches, sorted."""
    found = []
    for path in folder.rglob("*"):
        rel = path.relative_to(folder)
        if BYTECODE_DIR in rel.parts or path.is_dir():
            continue
        name = rel.as_posix()
        if name != MLMODEL and name not in MLFLOW_ADDED:
            found.append(name)
    return sorted(found)


def file_digests(folder: str | os.PathLike) -> dict[str, str]:
    """relative path -> SHA-256 of every file of a model folder but its MLmodel."""
    folder = Path(folder)
    return {name: sha256_file(folder / name) for name in _files(folder)}


def seal_folder(folder: str | os.PathLike) -> str:
    """Give a models-from-code pyfunc folder (just written by `mlflow.pyfunc.save_model`) its
    manifest and this loader; returns the SHA-256 of the MLmodel written (the seal)."""
    from mlflow.models import Model

    folder = Path(folder)
    model = Model.load(str(folder / MLMODEL))
    conf = model.flavors["python_function"]
    if conf.get("loader_module") != DELEGATE:
        raise ValueError(f"{folder}: not a models-from-code pyfunc (loader {conf.get('loader_module')!r})")
    conf["loader_module"] = LOADER
    if "code" in conf:
        conf[CODE_KEY] = conf.pop("code")
    model.metadata = {**(model.metadata or {}), MANIFEST_KEY: {"sha256": file_digests(folder)}}
    model.save(str(folder / MLMODEL))
    return sha256_file(folder / MLMODEL)


def mlmodel_digest(folder: str | os.PathLike) -> str | None:
    """The seal of a sealed model folder (SHA-256 of its MLmodel), None for an unsealed one."""
    import yaml

    raw = (Path(folder) / MLMODEL).read_bytes()
    meta = yaml.safe_load(raw) or {}
    return hashlib.sha256(raw).hexdigest() if (meta.get("metadata") or {}).get(MANIFEST_KEY) else None


# --- the check -------------------------------------------------------------------------------


def _warn(message: str) -> None:
    print(f"latent-models: warning: {message}", file=sys.stderr, flush=True)


@contextlib.contextmanager
def _quick_http():
    """MLflow's REST client retries a dead server for minutes: one retry, 30 s, unless set."""
    saved = {k: os.environ.get(k) for k in ("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "MLFLOW_HTTP_REQUEST_TIMEOUT")}
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "30")
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _check_sealed_digest(folder: Path, model_id: str | None, actual: str) -> None:
    """The MLmodel's SHA-256 against the logged model's tag on the configured tracking server.
    Where there is none to ask (no tracking URI set, no model id, a server that does not know
    the model or cannot be reached), one warning says the check rests on the folder alone."""
    import mlflow
    from mlflow.tracking._tracking_service.utils import is_tracking_uri_set

    if not model_id or not is_tracking_uri_set():
        _warn(f"{folder}: no tracking server to check its MLmodel against (MLFLOW_TRACKING_URI); files checked")
        return
    uri = mlflow.get_tracking_uri()
    try:
        with _quick_http():
            sealed = mlflow.MlflowClient(uri).get_logged_model(model_id).tags.get(SEAL_TAG)
    except MlflowException as exc:
        reason = (exc.message or str(exc)).splitlines()[0][:200]
        _warn(f"{folder}: logged model {model_id} not checked against {uri} ({reason}); files checked")
        return
    except Exception as exc:  # unreachable: connection errors come as requests' or urllib3's
        _warn(f"{folder}: logged model {model_id} not checked against {uri} ({type(exc).__name__}); files checked")
        return
    if sealed is None:
        raise _refused(folder, f"{MLMODEL}: logged model {model_id} on {uri} has no tag {SEAL_TAG}")
    if sealed != actual:
        raise _refused(
            folder, f"{MLMODEL} has SHA-256 {actual[:12]}..., not the {sealed[:12]}... sealed for {model_id} on {uri}"
        )


def _drop_bytecode(folder: Path) -> None:
    """Bytecode caches are not in the manifest, and Python would run a planted one in place of the
    checked source beside it: they go (Python writes them again from the checked sources). A file
    another process loading the same folder removed first, or wrote since (from the sources it
    checked), is no matter; one that cannot be removed is a refusal."""
    for cache in sorted(folder.rglob(BYTECODE_DIR)):
        if not cache.is_dir() or cache.is_symlink():
            continue
        for path in sorted(cache.rglob("*"), reverse=True):
            try:
                path.rmdir() if path.is_dir() and not path.is_symlink() else path.unlink()
            except FileNotFoundError:
                pass
            except OSError as exc:
                raise _refused(
                    folder, f"{path.relative_to(folder).as_posix()}: cannot remove bytecode ({exc.strerror})"
                ) from None
        with contextlib.suppress(OSError):
            cache.rmdir()


def verify(folder: str | os.PathLike) -> dict:
    """Check a sealed model folder; returns its MLmodel (as a dict) or raises a one-line refusal."""
    import yaml

    folder = Path(folder).resolve()
    try:
        raw = (folder / MLMODEL).read_bytes()
        meta = yaml.safe_load(raw) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise _refused(folder, f"{MLMODEL} unreadable ({type(exc).__name__})") from None
    manifest = ((meta.get("metadata") or {}).get(MANIFEST_KEY) or {}).get("sha256")
    if not isinstance(manifest, dict) or not manifest:
        raise _refused(folder, f"{MLMODEL} names this loader but holds no manifest ({MANIFEST_KEY})")
    _check_sealed_digest(folder, meta.get("model_id"), hashlib.sha256(raw).hexdigest())
    _drop_bytecode(folder)
    present = set(_files(folder))
    for name, expected in sorted(manifest.items()):
        if name not in present:
            raise _refused(folder, f"{name} is missing")
        actual = sha256_file(folder / name)
        if actual != expected:
            raise _refused(folder, f"{name} has SHA-256 {actual[:12]}..., its manifest says {expected[:12]}...")
    extra = sorted(present - set(manifest))
    if extra:
        more = f" (and {len(extra) - 1} more)" if extra[1:] else ""
        raise _refused(folder, f"{extra[0]} is not in its manifest{more}")
    return meta


def _load_pyfunc(data_path: str, model_config=None):
    """The pyfunc `loader_module` entry point of a sealed model: check it, then put its `code/`
    first on sys.path (as MLflow does for `code`) and hand over to MLflow's models-from-code loader."""
    import importlib

    meta = verify(data_path)
    code = (meta.get("flavors") or {}).get("python_function", {}).get(CODE_KEY)
    if code:
        code_dir = Path(data_path, code).resolve()
        if not code_dir.is_relative_to(Path(data_path).resolve()):
            raise _refused(Path(data_path), f"{MLMODEL}: its code folder {code!r} is outside the model")
        sys.path.insert(0, str(code_dir))
    return importlib.import_module(DELEGATE)._load_pyfunc(data_path, model_config)


# --- models logged before: one warning; a sealed model whose loader was swapped: refused ----


def _server_seal(model_id: str | None) -> str | None:
    """The seal tag of logged model `model_id` on the configured tracking server, if it can tell."""
    import mlflow
    from mlflow.tracking._tracking_service.utils import is_tracking_uri_set

    if not model_id or not is_tracking_uri_set():
        return None
    try:
        with _quick_http():
            return mlflow.MlflowClient().get_logged_model(model_id).tags.get(SEAL_TAG)
    except Exception:  # no such model, no server, no permission: nothing to tell
        return None


def _check_unsealed(local_path: str, conf: dict) -> None:
    """A folder loaded with another loader than this one: refused if it was sealed (its MLmodel
    holds a manifest, or the tracking server holds a seal for its model id: an MLmodel rewritten
    to skip the check); one warning if it is a latent-models model logged before write-once."""
    if conf.get("loader_module") == LOADER:
        return  # this module's _load_pyfunc checks it
    import yaml

    folder = Path(local_path)
    try:
        meta = yaml.safe_load((folder / MLMODEL).read_bytes()) or {}
    except (OSError, yaml.YAMLError):
        meta = {}
    loader = conf.get("loader_module")
    if (meta.get("metadata") or {}).get(MANIFEST_KEY):
        raise _refused(folder, f"{MLMODEL} holds a manifest but names loader {loader!r}, not {LOADER}")
    code = conf.get("code") or conf.get(CODE_KEY)
    if not code or not (folder / code / "latent_models").is_dir():
        return  # not a latent-models model
    if _server_seal(meta.get("model_id")):
        raise _refused(folder, f"logged model {meta['model_id']} is sealed, but this {MLMODEL} names loader {loader!r}")
    _warn(f"{folder}: logged before write-once (no manifest): its files are not checked")


def _watch(pyfunc) -> bool:
    """Wrap `pyfunc._add_code_from_conf_to_system_path`, which `load_model` looks up by name before
    it imports the loader; False where the module does not (yet) have it."""
    add = getattr(pyfunc, "_add_code_from_conf_to_system_path", None)
    if add is None:
        return False
    if getattr(add, "_latent_models_watched", False):
        return True

    def checked(local_path, conf, *args, **kwargs):
        try:
            _check_unsealed(local_path, conf)
        except ModelRefused:
            raise
        except Exception:  # a hook that only warns must never stop a load, of any model
            pass
        return add(local_path, conf, *args, **kwargs)

    checked._latent_models_watched = True
    checked.__wrapped__ = add
    pyfunc._add_code_from_conf_to_system_path = checked
    return True


class _WatchPyfuncImport(importlib.abc.MetaPathFinder):
    """Wraps `mlflow.pyfunc` as soon as it has been imported. This package may be imported while
    `mlflow` itself is (MLflow loads the plugin in mlflow_plugin.py from inside `import mlflow`),
    when importing `mlflow.pyfunc` would be circular: so it waits for the import to happen."""

    def find_spec(self, fullname, path, target=None):
        if fullname != PYFUNC:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                break
        else:
            return None
        exec_module = getattr(spec.loader, "exec_module", None)
        if exec_module is None:
            return spec

        def exec_then_watch(module):
            exec_module(module)
            with contextlib.suppress(Exception):
                _watch(module)

        spec.loader.exec_module = exec_then_watch
        return spec


def watch_pyfunc_loads() -> None:
    """From now on in this process, `mlflow.pyfunc.load_model` of a latent-models model without a
    manifest prints one warning, and one whose MLmodel holds a manifest but not this loader is
    refused. Wraps `mlflow.pyfunc` now if it is imported, else when it is; idempotent; never
    imports `mlflow.pyfunc` itself."""
    pyfunc = sys.modules.get(PYFUNC)
    if pyfunc is not None and _watch(pyfunc):
        return
    if not any(isinstance(finder, _WatchPyfuncImport) for finder in sys.meta_path):
        sys.meta_path.insert(0, _WatchPyfuncImport())


# Wherever this package is imported: as a loader, by latent_models, by hand, or by MLflow itself
# through the plugin in mlflow_plugin.py, in every process that imports mlflow. A hook that only
# warns must not make `import mlflow` fail.
with contextlib.suppress(Exception):
    watch_pyfunc_loads()
