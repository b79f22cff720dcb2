"""What a run records about itself while it is active: params, tags, metrics, its
description, figures, tables, the report; and the files it logged, read back."""

from __future__ import annotations

import contextlib
import tempfile
from pathlib import Path

import mlflow
from mlflow.entities import Metric
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from mlflow.utils.time import get_current_time_millis

NOTE = "mlflow.note.content"  # the description the MLflow UI shows for a run, a logged model or an experiment


def log_params(params: dict) -> None:
    """Log the config. Under `mlflow run` the launcher has logged the -P values already, in
    its own spelling (`''` for an empty string, `2.0` for 2), and MLflow forbids changing a
    param, so keys it has logged are kept as they are."""
    run = mlflow.active_run()
    logged = MlflowClient().get_run(run.info.run_id).data.params if run else {}
    spelled = {k: (str(v).lower() if isinstance(v, bool) else str(v)) for k, v in params.items()}
    mlflow.log_params({k: v for k, v in spelled.items() if k not in logged})


def active_run_id() -> str:
    return mlflow.active_run().info.run_id


def set_tags(tags: dict) -> None:
    mlflow.set_tags({k: str(v) for k, v in tags.items()})


def log_metrics(metrics: dict[str, float], step: int | None = None, prefix: str = "") -> None:
    """Metrics of the active run alone. Through the client, because MLflow's fluent
    `log_metrics` also links a metric to any model the run logged at the same step."""
    timestamp = get_current_time_millis()
    MlflowClient().log_batch(
        mlflow.active_run().info.run_id,
        metrics=[Metric(prefix + k, float(v), timestamp, step or 0) for k, v in metrics.items()],
    )


def set_description(text: str) -> None:
    """The run's description in the MLflow UI (Markdown)."""
    mlflow.set_tag(NOTE, text)


def log_figure(figure, path: str) -> None:
    import matplotlib.pyplot as plt

    mlflow.log_figure(figure, path)
    plt.close(figure)


def logged_files(folder: str) -> dict[str, bytes]:
    """Run-relative path -> bytes of each file the active run has logged under `folder` (e.g.
    its figures, for the report): read back from the artifact store, so exactly what was logged."""
    run_id = mlflow.active_run().info.run_id
    with tempfile.TemporaryDirectory() as tmp:
        with contextlib.suppress(MlflowException):  # nothing logged there: {}
            mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=folder, dst_path=tmp)
        return {p.relative_to(tmp).as_posix(): p.read_bytes() for p in sorted(Path(tmp).rglob("*")) if p.is_file()}


def log_report(text: str, path: str = "report.html") -> None:
    mlflow.log_text(text, path)


def log_dict(data: dict, path: str) -> None:
    """`data` as a JSON (or YAML, by `path`'s suffix) artifact of the active run."""
    mlflow.log_dict(data, path)


def log_table(rows: list[dict], path: str) -> None:
    """Rows as an MLflow table artifact (JSON; the UI's artifact view shows it as a table)."""
    import pandas as pd

    mlflow.log_table(pd.DataFrame(rows), artifact_file=path)
