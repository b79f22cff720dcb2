"""Batch scoring on Spark: `mlflow.pyfunc.spark_udf` over a DataFrame column, both models,
both forms (a column of base64 PNGs in and out; a column of flattened floats in and out),
on one local[2] session with a few dozen images. Skipped where pyspark or Java is missing."""

import os
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
