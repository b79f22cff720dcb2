"""The data a run trained and was tested on, as MLflow datasets: each split's name, source
and digest, logged as run inputs, and the datasets metrics are linked to."""

from __future__ import annotations

import warnings

import mlflow
import numpy as np

SPLIT_CONTEXTS = {"train": "training", "val": "validation", "test": "testing"}


def split_dataset(
    name: str, root: str, digest: str, split: str, features: np.ndarray, targets: np.ndarray, first: int = 0
) -> "mlflow.data.Dataset":
    """A split as an MLflow dataset named `<name>-<split>` (`<name>-<split>[:N]` for its first N
    images), its digest derived from the raw files'."""
    if first and first < len(features):
        features, targets, split = features[:first], targets[:first], f"{split}[:{first}]"
    with warnings.catch_warnings():  # MLflow registers two identical local-file source types
        warnings.simplefilter("ignore", UserWarning)
        return mlflow.data.from_numpy(
            features, targets=targets, source=root, name=f"{name}-{split}", digest=f"{digest}-{split}"[:36]
        )


def split_datasets(
    name: str, root: str, digest: str, splits: dict[str, tuple[np.ndarray, np.ndarray]]
) -> dict[str, "mlflow.data.Dataset"]:
    """Each split as an MLflow dataset (see `split_dataset`)."""
    return {
        split: split_dataset(name, root, digest, split, features, targets)
        for split, (features, targets) in splits.items()
    }


def folder_split_dataset(name: str, root: str, digest: str, split: str, shape: tuple[int, ...], size: int):
    """A split of an image folder as an MLflow dataset: its source folder, name, digest and the
    shape of its images (a MetaDataset: the pixels are not copied into the tracking store)."""
    from mlflow.data.meta_dataset import MetaDataset
    from mlflow.types.schema import Schema, TensorSpec

    with warnings.catch_warnings():  # MLflow registers two identical local-file source types
        warnings.simplefilter("ignore", UserWarning)
        from mlflow.data.dataset_source_registry import resolve_dataset_source

        source = resolve_dataset_source(root)
    schema = Schema([TensorSpec(np.dtype(np.float32), (size, *shape), name="images")])
    return MetaDataset(source=source, name=f"{name}-{split}", digest=f"{digest}-{split}"[:36], schema=schema)


def data_datasets(data) -> dict[str, "mlflow.data.Dataset"]:
    """A `DataSplits`' splits as MLflow datasets: the arrays for MNIST-style data, the folder's
    description (source, digest, shape) for an image folder."""
    if data.source == "folder":
        return {
            split: folder_split_dataset(data.name, data.root, data.digest, split, data.image_shape, size)
            for split, size in data.sizes.items()
        }
    return split_datasets(data.name, data.root, data.digest, data.as_numpy())


def log_datasets(
    datasets: dict[str, "mlflow.data.Dataset"], name: str, digest: str, sizes: dict[str, int] | None = None
) -> None:
    """Log each split as a run input (context training/validation/testing) with its size."""
    for split, dataset in datasets.items():
        mlflow.log_input(dataset, context=SPLIT_CONTEXTS[split])
    mlflow.set_tags({"dataset": name, "dataset_digest": digest})
    sizes = sizes or {split: len(dataset.features) for split, dataset in datasets.items()}
    mlflow.log_params({f"n_{split}": n for split, n in sizes.items()})


def log_dataset_input(dataset, context: str) -> None:
    mlflow.log_input(dataset, context=context)


def log_dataset(name: str, root: str, digest: str, splits: dict[str, tuple[np.ndarray, np.ndarray]]) -> dict:
    datasets = split_datasets(name, root, digest, splits)
    log_datasets(datasets, name, digest)
    return datasets
