"""Why `latent_models_seal` is imported in every process that imports mlflow, with no line of
latent-models in it: a bare `mlflow models serve -m <folder>` (and its scoring-server process),
`mlflow.pyfunc.load_model` in a script, a Spark executor.

A model logged before write-once names MLflow's own loader, so nothing of this package would run
when it loads, and its load would not print the warning docs/write-once.md promises. MLflow reads
the entry points of the group `mlflow.artifact_repository` when it first imports its artifact
repository registry, which it does inside `import mlflow` and which every model load goes through
(a model is always fetched through an artifact repository, even from a local folder). The entry
point in pyproject.toml names `not_an_artifact_store` below; loading it imports this module, and so
the package, whose import arms the warning (`watch_pyfunc_loads`).

This runs in the middle of `import mlflow`: this module imports nothing of mlflow, and the package
imports only `mlflow.exceptions` (already imported by then) and waits for `mlflow.pyfunc` to be
imported rather than importing it (it imports the registry back). MLflow turns an ImportError or
AttributeError here into a warning; the package lets no other error out of its import.
"""

SCHEME = "latent-models-seal"  # the entry point's name: a URI scheme nobody uses


def not_an_artifact_store(artifact_uri, tracking_uri=None, registry_uri=None):
    """What MLflow registers for the scheme: the entry point exists to be loaded, not used, and a
    URI that names it gets a plain error."""
    from mlflow.exceptions import MlflowException

    raise MlflowException(f"{artifact_uri}: {SCHEME}:// is not an artifact store (latent-models' load-time check)")
