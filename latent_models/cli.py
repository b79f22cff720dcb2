"""Click commands for the entry points. Options are generated from the config dataclasses,
so option names, MLproject parameter names and logged params cannot drift apart.

Loading this module (and `--help`) imports neither torch nor mlflow: the configs and the
errors are free of them, and each command imports what it runs when it runs
(tests/test_cli_startup.py checks it; benchmarks/cli_startup.py measures it).
"""

from __future__ import annotations

import dataclasses
import functools
import os
import sys
import typing

import click

from latent_models.config import EvaluateConfig, MainConfig, PromoteConfig, SearchConfig, SweepConfig
from latent_models.errors import (
    AccessDenied,
    AccessError,
    ConfigError,
    DataError,
    DeviceError,
    RegistryError,
    ResumeError,
)
from latent_models.kinds import trained
from latent_models.kinds.kind import Kind
from latent_models.team_access import PROJECT_MODELS, describe_refusal

USER_ERRORS = (
    ConfigError,
    DataError,
    DeviceError,
    FloatingPointError,
    RegistryError,
    ResumeError,
    AccessError,
    AccessDenied,
)


class WholeNumber(click.ParamType):
    """An int that also accepts `2.0`: MLflow's only numeric param type is float."""

    name = "integer"

    def convert(self, value, param, ctx):
        if isinstance(value, int):
            return value
        try:
            number = float(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is not a number", param, ctx)
        if not number.is_integer():
            self.fail(f"{value} is not a whole number", param, ctx)
        return int(number)


def options_from(config_cls):
    """Decorate a command with one `--<field>` option per dataclass field (same name)."""
    hints = typing.get_type_hints(config_cls)

    def decorate(fn):
        for f in reversed(dataclasses.fields(config_cls)):
            kind = hints[f.name]
            if typing.get_origin(kind) is typing.Literal:  # a choice: click lists the values and refuses others
                click_type = click.Choice(typing.get_args(kind))
            else:
                click_type = {bool: click.BOOL, int: WholeNumber(), float: click.FLOAT, str: click.STRING}[kind]
            fn = click.option(
                f"--{f.name}",
                f.name,
                type=click_type,
                default=f.default,
                show_default=True,
                help=f.metadata.get("help", ""),
            )(fn)
        return fn

    return decorate


def run_command(config_cls, runner):
    """A click command that builds `config_cls` from its options and calls `runner(config)`."""

    @options_from(config_cls)
    def command(**options):
        from latent_models.training import distributed  # torch: when a command runs, not for --help

        try:
            cfg = config_cls(**options)  # validates itself, the one time
            if getattr(cfg, "nproc_per_node", 1) > 1 and not distributed.under_torchrun():
                sys.exit(distributed.launch(cfg.nproc_per_node))
            result = runner(cfg)
        except USER_ERRORS as exc:
            raise click.ClickException(str(exc)) from None
        except Exception as exc:  # the tracking server refused (401/403): one line, no traceback
            refusal = describe_refusal(exc, _resources(cfg))
            if refusal is None:
                raise
            raise click.ClickException(refusal) from None
        except KeyboardInterrupt as exc:  # Ctrl-C: one line (the run says how to resume), exit 130
            click.echo(f"Error: {exc or 'interrupted'}", err=True)
            sys.exit(130)
        finally:
            distributed.teardown()
        if result:
            _print_summary(result)

    return functools.update_wrapper(command, runner)


def _resources(cfg) -> dict[str, str]:
    """The experiment and registered model a command works on, to name them in a refusal."""
    experiment = getattr(cfg, "experiment_name", "")
    if os.environ.get("MLFLOW_RUN_ID"):  # under `mlflow run`: its experiment, not the param
        experiment = os.environ.get("MLFLOW_EXPERIMENT_NAME") or f"id {os.environ.get('MLFLOW_EXPERIMENT_ID', '?')}"
    return {"experiment": experiment, "registered_model": getattr(cfg, "registered_model_name", "")}


def _print_summary(result: dict) -> None:
    runs = result.get("runs", {"": result})
    for name, r in runs.items():
        prefix = f"[{name}] " if name else ""
        shown = {
            k: v
            for k, v in r.items()
            if k.startswith(("test_", "fid_", "class_entropy_", "classifier_", "best ", "psnr_", "ssim_model"))
            or k in ("run_id", "registered_version", "promotion")
        }
        click.echo(prefix + ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in shown.items()))
    if result.get("run_id"):
        from latent_models.tracking import ui_link

        click.echo(f"In the MLflow UI: {ui_link(result['run_id'])}")


def _trains(kind: Kind):
    """The command of the entry point that trains `kind`."""

    def train(cfg) -> dict:
        from latent_models.training.pipeline import run_pipeline

        return run_pipeline(kind.recipe(), cfg)

    train.__doc__ = f"Train {kind.title}, log it to MLflow and register it."
    return train


def _main(cfg: MainConfig) -> dict:
    """Train both models: one parent run with an `ae` and a `vae` child run."""
    from latent_models.training.main import run_main

    return run_main(cfg)


def _evaluate(cfg: EvaluateConfig) -> dict:
    """Evaluate a logged model in a new run: the denoiser against classical baselines at every
    noise model and level; the VAE's likelihood and sample quality (FID, class entropy) for
    N(0, I) and a fitted prior."""
    from latent_models.evaluation.evaluate import run_evaluate

    result = run_evaluate(cfg)
    _print_table(result.pop("table"))
    return result


def _sweep(cfg: SweepConfig) -> dict:
    """Train every combination of a grid of params as child runs of one parent run."""
    from latent_models.tuning.sweep import run_sweep

    result = run_sweep(cfg)
    _print_table(result["rows"])
    best = result["best"]
    return {
        "run_id": result["run_id"],
        **({f"best {result['metric']}": best[result["metric"]], "best run_id": best["run_id"]} if best else {}),
    }


def _search(cfg: SearchConfig) -> dict:
    """Optuna search over training params: every trial a child run, losing trials pruned on
    validation, the study kept in a storage so a rerun continues it."""
    from latent_models.tuning.search import run_search

    result = run_search(cfg)
    _print_table(result["rows"])
    best, metric = result["best"], result["metric"]
    summary = {"run_id": result["run_id"]}
    if best:
        summary.update({f"best {metric}": best[metric], "best trial": best["number"], "best run_id": best["run_id"]})
    summary.update({k: result[k] for k in ("registered_version", "promotion") if k in result})
    return summary


def _print_table(rows: list[dict]) -> None:
    if not rows:
        return
    columns = [c for c in rows[0] if not (c.startswith("class_") and c[6:].isdigit())]
    cell = lambda v: f"{v:.4g}" if isinstance(v, float) else str(v)  # noqa: E731
    widths = {c: max(len(c), *(len(cell(r.get(c))) for r in rows)) for c in columns}
    click.echo("  ".join(c.ljust(widths[c]) for c in columns))
    for r in rows:
        click.echo("  ".join(cell(r.get(c)).ljust(widths[c]) for c in columns))


def _promote(cfg: PromoteConfig) -> dict:
    """Move an alias (default: champion) of a registered model to a version (default: the candidate)."""
    from latent_models.tracking import move_alias

    moved = move_alias(cfg.registered_model_name, cfg.version or None, cfg.alias)
    return {
        "promotion": f"{moved['registered_model_name']}@{moved['alias']} -> version {moved['version']} "
        f"(was {moved['previous'] or 'none'})"
    }


TRAIN_COMMANDS = {ep: click.command(name=ep)(run_command(k.config, _trains(k))) for ep, k in trained().items()}
main = click.command(name="main")(run_command(MainConfig, _main))
promote = click.command(name="promote")(run_command(PromoteConfig, _promote))
evaluate = click.command(name="evaluate")(run_command(EvaluateConfig, _evaluate))
sweep = click.command(name="sweep")(run_command(SweepConfig, _sweep))
search = click.command(name="search")(run_command(SearchConfig, _search))


@click.group(name="team-access")
def team_access():
    """Who may do what on the team tracking server (run as its admin: MLFLOW_TRACKING_URI,
    MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD or ~/.mlflow/credentials)."""


def _access_errors(fn):
    @functools.wraps(fn)
    def wrapped(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (AccessError, AccessDenied) as exc:
            raise click.ClickException(str(exc)) from None
        except Exception as exc:
            refusal = describe_refusal(exc, action="manage users and roles on", resource="the server")
            if refusal is None:
                raise
            raise click.ClickException(refusal) from None

    return wrapped


def _names(text: str) -> list[str]:
    return [n.strip() for n in text.split(",") if n.strip()]


@team_access.command(name="apply")
@click.option("--readers", default="", help="comma-separated users: see experiments and models")
@click.option("--trainers", default="", help="comma-separated users: log runs, register versions, set candidate")
@click.option(
    "--release-managers",
    "release_managers",
    default="",
    help="comma-separated users: MANAGE on registered models; only they move champion",
)
@click.option(
    "--password-dir",
    default=None,
    type=click.Path(file_okay=False),
    help="a new user's password is read from <dir>/<user>; missing: a random one is written there",
)
@click.option(
    "--models",
    default=",".join(PROJECT_MODELS),
    show_default=True,
    help="registered models to create (as admin) if missing",
)
@_access_errors
def team_access_apply(readers, trainers, release_managers, password_dir, models):
    """Create or update the roles readers, trainers and release-managers, their users and the
    project's registered models. Idempotent: run it again after every change of the lists."""
    import mlflow

    from latent_models.team_access import apply

    changes = apply(
        mlflow.get_tracking_uri(),
        {"readers": _names(readers), "trainers": _names(trainers), "release-managers": _names(release_managers)},
        password_dir,
        tuple(_names(models)),
    )
    for line in changes or ["nothing to change"]:
        click.echo(line)


@team_access.command(name="password")
@click.argument("username")
@_access_errors
def team_access_password(username):
    """Set USERNAME's password to $LATENT_MODELS_NEW_PASSWORD (or the file named by
    $LATENT_MODELS_NEW_PASSWORD_FILE). As an admin for anyone; for oneself, with one's current
    password as MLFLOW_TRACKING_PASSWORD."""
    import mlflow

    from latent_models.team_access import read_secret, set_password

    set_password(mlflow.get_tracking_uri(), username, read_secret("LATENT_MODELS_NEW_PASSWORD", what="new password"))
    click.echo(f"password of {username} changed")


@click.group()
def cli():
    """latent-models: train, track, register and promote denoising AEs and VAEs."""


for command in TRAIN_COMMANDS.values():
    cli.add_command(command)
cli.add_command(main)
cli.add_command(promote)
cli.add_command(evaluate)
cli.add_command(sweep)
cli.add_command(search)
cli.add_command(team_access)


def command(name: str) -> click.Command:
    """The command of the MLproject entry point `name` (entrypoints/<name>.py runs it)."""
    return cli.commands[name]
