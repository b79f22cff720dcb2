"""MLproject, click options and config dataclasses must agree one to one."""

import dataclasses
import shlex
import typing
from pathlib import Path

import click
import pytest
import yaml

from latent_models import cli
from latent_models.config import ENTRY_POINTS as CONFIGS

REPO = Path(__file__).resolve().parent.parent
ENTRY_POINTS = {name: (cli.command(name), config_cls) for name, config_cls in CONFIGS.items()}


def _mlproject():
    return yaml.safe_load((REPO / "MLproject").read_text())


def _as_mlproject_default(value):
    if isinstance(value, bool):
        return "true" if value else "false"
    return value


@pytest.mark.parametrize("name", ENTRY_POINTS)
def test_params_match_click_options_and_config(name):
    command, config_cls = ENTRY_POINTS[name]
    entry = _mlproject()["entry_points"][name]
    params = entry["parameters"]
    options = {p.name: p for p in command.params if isinstance(p, click.Option)}
    assert set(params) == set(options) == {f.name for f in dataclasses.fields(config_cls)}
    for pname, spec in params.items():
        default = options[pname].default
        declared = spec["default"]
        if isinstance(declared, bool):  # YAML reads true/false as booleans
            declared = "true" if declared else "false"
        assert str(declared) == str(_as_mlproject_default(default)), pname
        assert spec["type"] in ("string", "float")
        assert f"--{pname} {{{pname}}}" in entry["command"], f"{pname} not passed on"
    assert entry["command"].startswith(f"python entrypoints/{name}.py ")


def test_project_uses_conda_env_file():
    project = _mlproject()
    assert project["conda_env"] == "conda.yaml"
    env = yaml.safe_load((REPO / "conda.yaml").read_text())
    pip = next(d for d in env["dependencies"] if isinstance(d, dict))["pip"]
    assert any(p.startswith("mlflow") for p in pip) and any(p.startswith("torch") for p in pip)


@pytest.mark.parametrize("name", ENTRY_POINTS)
def test_choice_fields_are_click_choices_of_their_literal(name):
    command, config_cls = ENTRY_POINTS[name]
    hints = typing.get_type_hints(config_cls)
    options = {p.name: p for p in command.params if isinstance(p, click.Option)}
    for f in dataclasses.fields(config_cls):
        if typing.get_origin(hints[f.name]) is typing.Literal:
            assert isinstance(options[f.name].type, click.Choice), f.name
            assert tuple(options[f.name].type.choices) == typing.get_args(hints[f.name]), f.name
            assert f.default in typing.get_args(hints[f.name]), f.name
        else:
            assert not isinstance(options[f.name].type, click.Choice), f.name


@pytest.mark.parametrize("name", ENTRY_POINTS)
def test_mlflow_computes_each_command_from_the_declared_params_alone(name, tmp_path):
    """MLflow's own loader formats the command with the declared params only: an undeclared
    `{param}` stops `mlflow run` with a KeyError before anything starts."""
    from mlflow.projects import _project_spec

    entry = _project_spec.load_project(str(REPO)).get_entry_point(name)
    argv = shlex.split(entry.compute_command({}, str(tmp_path)))
    options = [a[2:] for a in argv if a.startswith("--")]
    assert len(options) == len(set(options)), f"an option is passed twice: {sorted(options)}"
    assert set(options) == set(entry.parameters)
