"""The environment files say what pyproject.toml says: conda.yaml (MLproject's), python_env.yaml
(MLflow's virtualenv format) and the Makefile's torch pin cannot drift from the package's own list."""

import re

import pytest
import tomllib
import yaml
from packaging.requirements import Requirement

from tests.conftest import REPO

PINNED = ("torch", "torchvision")  # pinned in the env files to what the Makefile installs


def _pyproject() -> dict[str, Requirement]:
    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    return {r.name: r for r in map(Requirement, deps)}


def _makefile_pins() -> dict[str, str]:
    line = next(ln for ln in (REPO / "Makefile").read_text().splitlines() if "pip install torch==" in ln)
    return dict(re.findall(r"(torch|torchvision)==([\w.]+)", line))


def _conda() -> list[str]:
    env = yaml.safe_load((REPO / "conda.yaml").read_text())
    return next(d for d in env["dependencies"] if isinstance(d, dict))["pip"]


def _python_env() -> list[str]:
    return yaml.safe_load((REPO / "python_env.yaml").read_text())["dependencies"]


@pytest.mark.parametrize("read", [_conda, _python_env], ids=["conda.yaml", "python_env.yaml"])
def test_env_file_lists_the_runtime_dependencies_and_the_project(read):
    lines = read()
    assert lines[-1] == "-e ."  # the project itself, last, so its dependencies resolve as listed
    listed = {r.name: r for r in map(Requirement, lines[:-1])}
    expected = _pyproject()
    assert set(listed) == set(expected)
    pins = _makefile_pins()
    for name, req in listed.items():
        if name in PINNED:
            assert str(req.specifier) == f"=={pins[name]}", name
            assert expected[name].specifier.contains(pins[name]), f"{name}=={pins[name]} is outside pyproject's range"
        else:
            assert req.specifier == expected[name].specifier, name


def test_both_env_files_name_the_same_python():
    conda = yaml.safe_load((REPO / "conda.yaml").read_text())["dependencies"]
    python = next(d for d in conda if isinstance(d, str) and d.startswith("python="))
    assert python == f"python={yaml.safe_load((REPO / 'python_env.yaml').read_text())['python']}"
