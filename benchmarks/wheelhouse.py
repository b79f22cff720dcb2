"""Build the wheelhouse that benchmarks/gpu_check.sh installs from on an offline GPU host.

    python benchmarks/wheelhouse.py --dest wheelhouse --python_version 3.12 --platform manylinux_2_28_x86_64
    make wheels PY=3.12 PLATFORM=manylinux_2_28_x86_64          # the same, plus this project's wheel

Writes DEST/requirements.txt and downloads, for that Python and platform, the wheels that
satisfy it: what gpu_check.sh's steps import (traced), not everything pyproject.toml names.
gpu_check.sh installs this project's wheel with --no-deps, then `-r requirements.txt` with
pip's resolver, so every version bound below is still checked on the host.

- MLflow: `mlflow-skinny` at the version `mlflow` would be (the same `mlflow` package without
  the UI's JavaScript), plus mlflow's own requirements except SERVER_ONLY: tracking to a
  SQLite store runs in-process and `mlflow models serve` is FastAPI + uvicorn.
- This project's requirements except OFF_PATH, which no step of the check imports.
- Not torch, torchvision or the CUDA stack (the host's), nor HOST: numpy and pillow are
  torchvision's own requirements, so a host with torchvision has them (pip still checks their
  versions). --torchvision X, for a host without torchvision, adds torchvision==X (no deps)
  and numpy and pillow. --host_has leaves out more of what the host has (a GPU image with the
  scientific stack needs only about 25 MB: --host_has scipy,pandas,matplotlib,scikit-learn).
- PURE_PYTHON: packages that publish a pure-Python wheel beside compiled ones whose compiled
  parts are optional speed-ups; the pure wheel (same version) replaces the compiled one.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tempfile
import zipfile
from email.parser import Parser
from pathlib import Path

import click
import tomllib
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name, parse_wheel_filename

REPO = Path(__file__).resolve().parent.parent
SERVER_ONLY = {  # mlflow's requirements that neither SQLite tracking nor `mlflow models serve` imports
    "mlflow-tracing": "its modules are all in mlflow-skinny",
    "pyarrow": "pandas and MLflow import it only if present (Arrow/Parquet datasets, unused here); 49 MB",
    "flask": "`mlflow server` and the UI",
    "flask-cors": "`mlflow server`",
    "gunicorn": "`mlflow server`",
    "waitress": "`mlflow server` on Windows",
    "graphene": "`mlflow server`'s GraphQL API",
    "huey": "`mlflow server`'s job runner",
    "aiohttp": "MLflow's AI gateway and assistant",
    "docker": "`mlflow models build-docker`",
    "skops": "the scikit-learn flavor's model format",
}
OFF_PATH = {  # this project's requirements that no step of gpu_check.sh imports
    "scikit-image": "non-local-means baseline of `evaluate`",
    "bm3d": "BM3D baseline of `evaluate` (opt-in, imported only when it runs)",
    "optuna": "`search`",
    "psycopg": "the team-server tests (PostgreSQL)",
    "pyspark": "tests/test_spark.py (and it publishes no wheel)",
    "hypothesis": "the fuzz test of the served models",
    "ruff": "`make lint`",
}
TORCH = ("torch", "torchvision")
HOST = ("numpy", "pillow")
PURE_PYTHON = ("fonttools", "sqlalchemy", "charset-normalizer")


def platform_tags(platform: str) -> list[str]:
    """pip matches --platform tags exactly: a manylinux_2_28 host also takes manylinux_2_27 ... 2_5 wheels."""
    m = re.fullmatch(r"manylinux_2_(\d+)_(\w+)", platform)
    if not m:
        return [platform]
    return [f"manylinux_2_{k}_{m[2]}" for k in range(int(m[1]), 4, -1)] + [
        f"manylinux{v}_{m[2]}" for v in ("2014", "2010", "1")
    ]


def pip_download(dest: Path, python_version: str, platforms: list[str], *args: str) -> None:
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "-q",
        "--only-binary=:all:",
        "--python-version",
        python_version,
        "--dest",
        str(dest),
    ]
    for p in platforms:
        cmd += ["--platform", p]
    subprocess.run(cmd + list(args), check=True)


def requires_dist(wheel: Path) -> list[Requirement]:
    with zipfile.ZipFile(wheel) as z:
        name = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
        meta = Parser().parsestr(z.read(name).decode())
    reqs = [Requirement(r) for r in meta.get_all("Requires-Dist") or []]
    return [r for r in reqs if not (r.marker and "extra" in str(r.marker))]


def requirements(python_version: str, platforms: list[str]) -> list[str]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    lines = []
    for spec in project["dependencies"] + project["optional-dependencies"]["test"]:
        req = Requirement(spec)
        name = canonicalize_name(req.name)
        if name in OFF_PATH or (name == "mlflow" and any(x.startswith("mlflow-skinny==") for x in lines)):
            continue  # not imported by the check, or mlflow again (the test extra's mlflow[auth])
        if name == canonicalize_name(project["name"]):
            continue  # the test extra naming this project's own extras (bm3d, docs): neither is on the path
        if name != "mlflow":
            lines.append(spec)
            continue
        # The newest mlflow-skinny in the project's range, and the requirements of the mlflow of that version.
        with tempfile.TemporaryDirectory() as tmp:
            pip_download(Path(tmp), python_version, platforms, "--no-deps", f"mlflow-skinny{req.specifier}")
            version = parse_wheel_filename(next(Path(tmp).glob("*.whl")).name)[1]
            pip_download(Path(tmp), python_version, platforms, "--no-deps", f"mlflow=={version}")
            lines.append(f"mlflow-skinny=={version}")
            lines += [
                str(r)
                for r in requires_dist(next(Path(tmp).glob("mlflow-*.whl")))
                if canonicalize_name(r.name) not in SERVER_ONLY and canonicalize_name(r.name) != "mlflow-skinny"
            ]
    return lines


def wheels(dest: Path) -> dict[str, Path]:
    return {canonicalize_name(parse_wheel_filename(w.name)[0]): w for w in dest.glob("*.whl")}


@click.command()
@click.option("--dest", default="wheelhouse", type=click.Path(path_type=Path), help="folder (created; wheels added)")
@click.option("--python_version", default="3.12", help="the GPU host's Python, e.g. 3.12")
@click.option("--platform", default="manylinux_2_28_x86_64", help="the GPU host's platform tag")
@click.option(
    "--torchvision", default="", help="for a host without torchvision: add torchvision==X (no deps), numpy and pillow"
)
@click.option(
    "--host_has",
    default="",
    help="comma-separated packages the host already has (e.g. scipy,pandas): their wheels are left out, "
    "their lines stay in requirements.txt, so pip still checks the host's versions",
)
def main(dest: Path, python_version: str, platform: str, torchvision: str, host_has: str) -> None:
    platforms = platform_tags(platform)
    dest.mkdir(parents=True, exist_ok=True)
    lines = requirements(python_version, platforms)
    (dest / "requirements.txt").write_text(
        "# benchmarks/wheelhouse.py: what gpu_check.sh installs (with pip's resolver) beside latent-models (--no-deps)\n"
        + "\n".join(lines)
        + "\n"
    )
    with tempfile.NamedTemporaryFile("w", suffix=".txt") as download:  # the host's torch and torchvision: not here
        download.write("\n".join(x for x in lines if canonicalize_name(Requirement(x).name) not in TORCH) + "\n")
        download.flush()
        pip_download(dest, python_version, platforms, "-r", download.name)
    for name, wheel in wheels(dest).items():
        if name in PURE_PYTHON and not wheel.name.endswith("-none-any.whl"):
            version = str(parse_wheel_filename(wheel.name)[1])
            try:
                pip_download(dest, python_version, ["any"], "--no-deps", f"{name}=={version}")
            except subprocess.CalledProcessError:
                continue  # no pure wheel of that version: keep the compiled one
            wheel.unlink()
    for name, wheel in wheels(dest).items():
        if (name in HOST and not torchvision) or name in {canonicalize_name(n) for n in host_has.split(",") if n}:
            wheel.unlink()
    if torchvision:
        pip_download(dest, python_version, platforms, "--no-deps", f"torchvision=={torchvision}")
    total = sum(w.stat().st_size for w in dest.glob("*.whl"))
    print(f"{dest}: {len(list(dest.glob('*.whl')))} wheels, {total / 2**20:.0f} MiB")


if __name__ == "__main__":
    main()
