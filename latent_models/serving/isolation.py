"""One process, several logged versions: each loaded model runs the `latent_models` it shipped.

MLflow ships this package with every model (`code_paths`) and, on load, only puts the
model's `code/` folder first on `sys.path` (`mlflow.utils.model_utils._add_code_to_system_path`);
it does not drop modules already imported. So in a process that has imported
`latent_models` -- from a first loaded version, or from a checkout -- `import latent_models`
in a second version's entry script returns the first one's code, silently.

The entry script (`logged_model.ENTRY_SCRIPT`) therefore loads its wrapper with `own_model`, read
by file path from the model's own `code/` folder (never through the possibly foreign
package): when the package already imported is the same code (same source files, byte for
byte) it is used as it is; when it differs, the model's own copy is imported under the same
name in a clean `sys.modules`, the wrapper is built from it, and the modules that were
there before are put back, so the rest of the process keeps what it imported. The wrapper's
`load_context` runs with its own modules installed (imports made while loading resolve to
its own code); `predict` needs none (nothing in it imports `latent_models` lazily).
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import sys
from pathlib import Path

PACKAGE = "latent_models"


def source_digest(package_dir: Path) -> str:
    """A digest of every .py file under `package_dir` (relative names and contents)."""
    digest = hashlib.sha256()
    for path in sorted(package_dir.rglob("*.py")):
        if "__pycache__" in path.parts:
            continue
        digest.update(path.relative_to(package_dir).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def _package_modules() -> dict:
    return {name: module for name, module in sys.modules.items() if name == PACKAGE or name.startswith(PACKAGE + ".")}


@contextlib.contextmanager
def _modules_installed(modules: dict):
    """sys.modules holds `modules` for the package (and nothing else of it) inside the block."""
    before = _package_modules()
    for name in before:
        del sys.modules[name]
    sys.modules.update(modules)
    try:
        yield
    finally:
        for name in _package_modules():
            del sys.modules[name]
        sys.modules.update(before)


def own_model(entry_file: str, module: str, cls: str):
    """An instance of `module.cls` from the `latent_models` shipped beside `entry_file` (the
    model's copy of its entry script, next to its `code/` folder)."""
    code_dir = Path(entry_file).resolve().parent / "code"
    own_dir = code_dir / PACKAGE
    loaded = sys.modules.get(PACKAGE)
    loaded_dir = (
        Path(loaded.__file__).resolve().parent if loaded is not None and getattr(loaded, "__file__", None) else None
    )
    if (
        not own_dir.is_dir()
        or loaded_dir is None
        or loaded_dir == own_dir.resolve()
        or source_digest(loaded_dir) == source_digest(own_dir)
    ):
        # Nothing imported yet (MLflow put code/ first on sys.path), or the very same code.
        return getattr(importlib.import_module(module), cls)()
    own: dict = {}
    with _modules_installed({}):
        sys.path.insert(0, str(code_dir))
        try:
            instance = getattr(importlib.import_module(module), cls)()
        except Exception as exc:
            raise ImportError(
                f"this model's own {PACKAGE} (in {code_dir}) cannot be imported beside the "
                f"{PACKAGE} already loaded from {loaded_dir}: {exc}"
            ) from exc
        finally:
            sys.path.remove(str(code_dir))
        own.update(_package_modules())
    if PACKAGE not in own or Path(own[PACKAGE].__file__).resolve().parent != own_dir.resolve():
        raise ImportError(f"this model's own {PACKAGE} (in {code_dir}) was not the one imported")
    load_context = instance.load_context

    def load_own_context(context):
        with _modules_installed(own):
            return load_context(context)

    instance.load_context = load_own_context
    return instance
