"""The same wall-clock budget, three ways to spend it on the denoiser: `search` with TPE and
median pruning, `search` with random sampling and no pruning, and the grid `sweep` (its cells
in order until the budget runs out). Prints a markdown table of the best validation PSNR each
found (selection on validation only; test PSNR of that run beside it).

    python benchmarks/search.py --data_dir ../shared/data --budget_s 1800

One method after another, never two trainings at once, into a throwaway SQLite store (and
Optuna storage beside it). Each method starts no new trial or cell after --budget_s; the one
in progress finishes, so wall times can exceed the budget by up to one run.
"""

from __future__ import annotations

import os
import platform
import tempfile
import time

import click
import torch

SPACE = "lr=loguniform(1e-3,1e-2) width=int(8,24) arch=choice(unet,conv) weight_decay=loguniform(1e-6,1e-3)"
GRID = "lr=0.001,0.003,0.01 width=8,16,24 arch=unet,conv weight_decay=0.0001"


def _search_row(name: str, cfg, budget_s: float) -> dict:
    from latent_models.tuning.search import run_search

    started = time.perf_counter()
    result = run_search(cfg)
    wall = time.perf_counter() - started
    states = [r["state"] for r in result["rows"]]
    best = result["best"] or {}
    return {
        "method": name,
        "finished": states.count("complete") + states.count("pruned"),
        "pruned": states.count("pruned"),
        "best_val_psnr": best.get("val_psnr"),
        "test_psnr": best.get("test_psnr"),
        "params": best.get("params"),
        "wall_s": wall,
    }


def _sweep_row(grid: str, params: str, data_dir: str, budget_s: float) -> dict:
    """The sweep's own cells (child_configs) and trainer, in grid order, until the budget ends."""
    from latent_models import tracking
    from latent_models.config import SweepConfig
    from latent_models.tuning.child_runs import splits_for, trainer
    from latent_models.tuning.sweep import child_configs

    cfg = SweepConfig(model="ae", grid=grid, params=params, data_dir=data_dir, experiment_name="bench-sweep")
    cells, train, loaded, rows = child_configs(cfg), trainer("ae"), {}, []
    started = time.perf_counter()
    with tracking.training_run(cfg.experiment_name, "grid within budget") as parent:
        for swept, child in cells:
            if time.perf_counter() - started >= budget_s:
                break
            result = train(child, parent_run_id=parent.info.run_id, data=splits_for(child, loaded))
            rows.append((result["val_psnr"], result["test_psnr"], swept))
    wall = time.perf_counter() - started
    best = max(rows, key=lambda r: r[0]) if rows else (None, None, None)
    return {
        "method": f"grid sweep ({len(rows)} of {len(cells)} cells)",
        "finished": len(rows),
        "pruned": 0,
        "best_val_psnr": best[0],
        "test_psnr": best[1],
        "params": best[2],
        "wall_s": wall,
    }


@click.command()
@click.option("--data_dir", default="", help="dataset root (torchvision layout)")
@click.option("--budget_s", type=float, default=1800.0, help="wall-clock seconds per method")
@click.option("--epochs", type=int, default=3, help="epochs of every trial / cell")
@click.option("--limit_train", type=int, default=0, help="first N training images (0: all); for a quick check")
@click.option(
    "--pruner_startup_trials",
    type=int,
    default=2,
    help="trials that finish before the median pruner stops any (a short budget fits few trials)",
)
@click.option("--extra_params", default="", help="more fixed params for every run (e.g. `val_size=100 download=false`)")
@click.option("--tracking_uri", default="", help="MLflow store (default: a temporary SQLite file)")
def main(
    data_dir: str,
    budget_s: float,
    epochs: int,
    limit_train: int,
    pruner_startup_trials: int,
    extra_params: str,
    tracking_uri: str,
) -> None:
    import mlflow

    from latent_models.config import SearchConfig

    data_dir = os.path.abspath(data_dir) if data_dir else ""  # before leaving the working directory
    tmp = tempfile.mkdtemp(prefix="latent-models-search-bench-")
    os.chdir(tmp)
    mlflow.set_tracking_uri(tracking_uri or f"sqlite:///{tmp}/mlflow.db")
    params = f"epochs={epochs} limit_train={limit_train} {extra_params}".strip()
    common = dict(
        model="ae",
        space=SPACE,
        params=params,
        data_dir=data_dir,
        n_trials=1000,
        timeout=budget_s,
        seed=0,
        storage=f"sqlite:///{tmp}/optuna.db",
    )
    rows = [
        _search_row(
            "search: TPE + median pruning",
            SearchConfig(
                **common,
                sampler="tpe",
                pruner="median",
                pruner_startup_trials=pruner_startup_trials,
                study_name="tpe-median",
                experiment_name="bench-search",
            ),
            budget_s,
        ),
        _search_row(
            "search: random, no pruning",
            SearchConfig(
                **common, sampler="random", pruner="none", study_name="random", experiment_name="bench-search"
            ),
            budget_s,
        ),
        _sweep_row(GRID, params, data_dir, budget_s),
    ]
    print(
        f"\n{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}; "
        f"budget {budget_s:g} s per method, {epochs} epochs per run, median pruner after {pruner_startup_trials} "
        f"trials, space `{SPACE}`, grid `{GRID}`\n"
    )
    print("| method | runs finished | pruned | best val_psnr (dB) | its test_psnr (dB) | its params | wall (s) |")
    print("|---|---|---|---|---|---|---|")
    cell = lambda v: f"{v:.2f}" if isinstance(v, float) else str(v)  # noqa: E731
    for r in rows:
        print(
            f"| {r['method']} | {r['finished']} | {r['pruned']} | {cell(r['best_val_psnr'])} | {cell(r['test_psnr'])} "
            f"| {r['params']} | {r['wall_s']:.0f} |"
        )


if __name__ == "__main__":
    main()
