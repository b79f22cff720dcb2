"""Batch scoring on Spark: `mlflow.pyfunc.spark_udf` over a DataFrame column, both models,
both forms (a column of base64 PNGs in and out; a column of flattened floats in and out),
on one local[2] session with a few dozen images. Skipped where pyspark or Java is missing."""

import os
import re
import shutil
import sys

import mlflow
import numpy as np
import pytest
import torch

from latent_models.kinds.denoiser.config import DenoiserConfig
from latent_models.kinds.vae.config import VAEModelConfig
from latent_models.kinds.vae.model import ConvVAE
from latent_models.models import build_model
from latent_models.serving.logged_model import model_saver
from latent_models.serving.png import images_to_png_frame, png_frame_to_images
from latent_models.tracking import log_model

pyspark = pytest.importorskip("pyspark", reason="pyspark is not installed (the test extra installs it)")
if shutil.which("java") is None:
    pytest.skip("no Java runtime (java not on PATH): .ci/run installs default-jre-headless", allow_module_level=True)

N = 40


@pytest.fixture(scope="module")
def spark():
    from pyspark.sql import SparkSession

    # Spark's Python workers run this interpreter (the venv), not whatever `python3` is on PATH.
    saved = {k: os.environ.get(k) for k in ("PYSPARK_PYTHON", "PYSPARK_DRIVER_PYTHON")}
    os.environ["PYSPARK_PYTHON"] = os.environ["PYSPARK_DRIVER_PYTHON"] = sys.executable
    session = (
        SparkSession.builder.master("local[2]")
        .appName("latent-models-test")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.shuffle.partitions", "2")
        .config("spark.driver.bindAddress", "127.0.0.1")
        .config("spark.driver.host", "127.0.0.1")
        .getOrCreate()
    )
    try:
        yield session
    finally:
        session.stop()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.mark.parametrize("kind", ["denoiser", "vae"])
def test_spark_udf_scores_both_forms(spark, tracking, kind):
    from pyspark.sql.functions import col, struct

    torch.manual_seed(0)
    model = (
        build_model(DenoiserConfig(arch="unet", latent_dim=8, width=4))
        if kind == "denoiser"
        else ConvVAE(VAEModelConfig(latent_dim=4, width=8))
    ).eval()
    x = np.random.default_rng(0).random((N, 28, 28), dtype=np.float32)
    with mlflow.start_run():
        info = log_model(kind, model_saver(model, x[:2]), 0, kind)
    expected = mlflow.pyfunc.load_model(info.model_uri).predict(x.reshape(N, 784))

    frame = images_to_png_frame(x)
    frame["flat"] = list(x.reshape(N, 784))
    frame["id"] = np.arange(N)
    df = spark.createDataFrame(frame).repartition(2)  # two tasks, several rows each

    # PNGs in, PNGs out: the output schema (a string column) is the default result type.
    pngs = mlflow.pyfunc.spark_udf(spark, info.model_uri, env_manager="local")
    # floats in, floats out: (N, 784) per batch, one array<float> per row.
    floats = mlflow.pyfunc.spark_udf(spark, info.model_uri, result_type="array<float>", env_manager="local")
    scored = (
        df.withColumn("png_out", pngs(col("image")))
        .withColumn("named_out", pngs(struct("image")))
        .withColumn("float_out", floats(col("flat")))
        .orderBy("id")
        .toPandas()
    )

    assert scored["png_out"].map(type).eq(str).all()
    assert scored["png_out"].equals(scored["named_out"])
    from_pngs = png_frame_to_images(scored["png_out"].tolist())
    from_floats = np.stack(scored["float_out"].to_numpy())
    assert from_floats.shape == (N, 784)
    assert np.allclose(from_floats, expected, atol=1e-5)
    assert np.abs(from_pngs.reshape(N, 784) - expected).max() < 0.02  # 8-bit input and output


def test_spark_udf_refuses_a_changed_model_before_its_code_runs(spark, tmp_path):
    """A sealed folder whose entry script was changed: the executor that loads it refuses it with
    the one line naming the file, and the changed script never runs. The driver only reads the
    MLmodel, so what the user sees is the failed task, at the first action."""
    from mlflow.models import Model
    from pyspark.sql.functions import col

    from latent_models_seal import ModelRefused

    torch.manual_seed(0)
    x = np.random.default_rng(0).random((4, 28, 28), dtype=np.float32)
    folder = tmp_path / "model"
    model_saver(build_model(DenoiserConfig(arch="unet", latent_dim=8, width=4)).eval(), x[:1])(str(folder), Model())
    ran = tmp_path / "ran"
    entry = folder / "denoiser.py"
    entry.write_text(f"open({str(ran)!r}, 'w').close()\n" + entry.read_text())

    udf = mlflow.pyfunc.spark_udf(spark, str(folder), result_type="array<float>", env_manager="local")
    df = spark.createDataFrame([(row.tolist(),) for row in x.reshape(4, 784)], ["flat"])
    with pytest.raises(Exception) as failed:  # pyspark's PythonException, carrying the worker's traceback
        df.withColumn("out", udf(col("flat"))).collect()
    refusals = [line for line in str(failed.value).splitlines() if ModelRefused.__name__ in line]
    assert refusals, str(failed.value)[-3000:]
    assert all(
        re.fullmatch(
            r"latent_models_seal\.ModelRefused: refused to load the model at \S+: denoiser\.py has SHA-256 "
            r"[0-9a-f]{12}\.\.\., its manifest says [0-9a-f]{12}\.\.\.",
            line.strip(),
        )
        for line in refusals
    ), refusals
    assert not ran.exists()  # the check came first: the changed script was never executed
