"""The search's Optuna study: where it is stored, opened by any number of processes at once,
and which of its trials count. A killed search continues where it stopped, because the
study outlives the process (SQLite beside the tracking store, or a server such as the team's
PostgreSQL)."""

from __future__ import annotations

import contextlib
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import optuna
from optuna.trial import TrialState

from latent_models import tracking
from latent_models.config import SearchConfig
from latent_models.errors import ConfigError

if TYPE_CHECKING:
    from latent_models.tuning.search import Plan

# A trial whose process died (no heartbeat for GRACE_S) is marked failed and does not count.
HEARTBEAT_S, GRACE_S = 10, 30
COUNTED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)


def storage_url(cfg: SearchConfig) -> str:
    """`storage`, else optuna.db beside a sqlite:/// tracking store, else ./optuna.db."""
    if cfg.storage:
        return cfg.storage
    folder = tracking.store_folder() or Path()
    return f"sqlite:///{(folder / 'optuna.db').resolve()}"


def shown_url(url: str) -> str:
    """The URL without its password, for logs and params."""
    with contextlib.suppress(Exception):
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    return url


def open_storage(url: str) -> optuna.storages.RDBStorage:
    """The storage, with heartbeats (a dead process's running trial is failed, not waited for).
    Anything that stops it opening is one ConfigError, before any run starts. A new SQLite
    file gets its tables under a file lock: two processes creating them at once collide."""
    sqlite = url.startswith("sqlite")
    engine_kwargs = {"connect_args": {"timeout": 60}} if sqlite else {}
    try:
        with _creation_lock(url if sqlite else ""), warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # heartbeats
            return optuna.storages.RDBStorage(
                url, engine_kwargs=engine_kwargs, heartbeat_interval=HEARTBEAT_S, grace_period=GRACE_S
            )
    except Exception as exc:  # SQLAlchemy and drivers raise many kinds; the user fixes the URL
        message = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ConfigError(f"storage {shown_url(url)!r} cannot be opened: {message}") from None


@contextlib.contextmanager
def _creation_lock(url: str):
    path = url.split(":///", 1)[1] if ":///" in url else ""
    if not path or path == ":memory:":
        yield
        return
    try:
        import fcntl
    except ImportError:
        fcntl = None
    with open(f"{path}.lock", "a") as lock:
        if fcntl:
            fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def open_study(cfg: SearchConfig, plan: Plan, storage) -> optuna.Study:
    seed = None if cfg.seed < 0 else cfg.seed
    sampler = (
        optuna.samplers.TPESampler(seed=seed) if cfg.sampler == "tpe" else optuna.samplers.RandomSampler(seed=seed)
    )
    pruner = (
        optuna.pruners.MedianPruner(n_startup_trials=cfg.pruner_startup_trials, n_warmup_steps=cfg.pruner_warmup_epochs)
        if cfg.pruner == "median"
        else optuna.pruners.NopPruner()
    )
    study = optuna.create_study(
        storage=storage,
        study_name=cfg.default_study_name(),
        direction=plan.direction,
        sampler=sampler,
        pruner=pruner,
        load_if_exists=True,
    )
    known = study.user_attrs.get("search")
    if known is None:
        study.set_user_attr("search", plan.signature())
    elif known != plan.signature():
        raise ConfigError(
            f"study {study.study_name!r} searches {known}; this search differs "
            "(space, params or metric): give another study_name"
        )
    return study


def counted_trials(study: optuna.Study) -> int:
    """Trials that count towards n_trials: finished (complete or pruned) or running somewhere."""
    return len(study.get_trials(deepcopy=False, states=COUNTED))
