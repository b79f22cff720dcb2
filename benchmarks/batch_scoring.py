"""Batch scoring throughput: in-process `pyfunc.predict` on any N versus `mlflow.pyfunc.spark_udf`.

    python benchmarks/batch_scoring.py                  # an untrained default denoiser, 4096 images
    MLFLOW_TRACKING_URI=sqlite:///mlflow.db python benchmarks/batch_scoring.py --model_uri models:/latent-denoiser@champion

Registers an untrained default-architecture denoiser (weights do not change the timing) in a
temporary store unless --model_uri is given, then times, on the same N noisy fixture digits:
in-process `predict` on the whole batch at once (floats (N, 784), and the PNG DataFrame; the
model runs it 1024 images at a time), and `spark_udf(..., env_manager="local")` on a local
Spark session over a column of base64 PNGs (default result type: the output schema's string)
and a column of flattened floats (`result_type="array<float>"`). Spark is timed end to end
(DataFrame built and cached first; `count()` of the scored column forces every row), after one
warm-up pass that loads the model into the Python workers. Needs pyspark and Java 17+.
"""

from __future__ import annotations

import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import click

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "benchmarks"))


def _best(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


@click.command()
@click.option(
    "--model_uri", default=None, help="a registered denoiser (default: an untrained one in a temporary store)"
)
@click.option("--images", default=4096, show_default=True)
@click.option("--master", default="local[2]", show_default=True)
@click.option("--repeats", default=3, show_default=True)
def main(model_uri, images, master, repeats):
    import mlflow
    import torch
    from serving import _bench_model, _inputs

    from latent_models.serving.png import images_to_png_frame

    with tempfile.TemporaryDirectory() as tmp:
        if model_uri is None:
            _, model_uri = _bench_model(Path(tmp))
        x = _inputs(images)
        flat = x.reshape(len(x), -1)
        frame = images_to_png_frame(x)
        model = mlflow.pyfunc.load_model(model_uri)
        model.predict(flat[:64])
        rows = []
        for form, batch in (("floats (N, 784)", flat), ("base64 PNG", frame)):
            seconds = _best(lambda batch=batch: model.predict(batch), repeats)
            rows.append(("in-process predict", form, seconds))

        os.environ["PYSPARK_PYTHON"] = os.environ["PYSPARK_DRIVER_PYTHON"] = sys.executable
        from pyspark.sql import SparkSession
        from pyspark.sql.functions import col

        spark = (
            SparkSession.builder.master(master)
            .appName("batch-scoring-benchmark")
            .config("spark.ui.enabled", "false")
            .config("spark.driver.bindAddress", "127.0.0.1")
            .config("spark.driver.host", "127.0.0.1")
            .getOrCreate()
        )
        spark.sparkContext.setLogLevel("ERROR")
        pdf = frame.copy()
        pdf["flat"] = list(flat)
        df = spark.createDataFrame(pdf).repartition(spark.sparkContext.defaultParallelism).cache()
        df.count()
        udfs = {
            "base64 PNG": (mlflow.pyfunc.spark_udf(spark, model_uri, env_manager="local"), "image"),
            "floats (N, 784)": (
                mlflow.pyfunc.spark_udf(spark, model_uri, result_type="array<float>", env_manager="local"),
                "flat",
            ),
        }
        for form, (udf, column) in udfs.items():
            scored = df.select(udf(col(column)).alias("out"))
            scored.write.format("noop").mode("overwrite").save()  # warm-up: model into the workers
            seconds = _best(lambda scored=scored: scored.write.format("noop").mode("overwrite").save(), repeats)
            rows.append((f"spark_udf {master}", form, seconds))
        spark.stop()

    load = os.getloadavg()
    print(
        f"{platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__.split('+')[0]} "
        f"({torch.get_num_threads()} threads), mlflow {mlflow.__version__}, N = {images}, "
        f"load average at the end {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f}\n"
    )
    print("| path | input form | seconds (best of %d) | images/s |" % repeats)
    print("|---|---|---:|---:|")
    for path, form, seconds in rows:
        print(f"| {path} | {form} | {seconds:.2f} | {images / seconds:.0f} |")


if __name__ == "__main__":
    main()
