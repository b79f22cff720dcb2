"""`latent-models --help` stays fast: loading the CLI and asking any command for its help
imports none of the heavy libraries; each command imports them when it runs.
benchmarks/cli_startup.py measures what that saves."""

import dataclasses
import json
import subprocess
import sys

import pytest

from latent_models import config
from tests.conftest import REPO

HEAVY = ("torch", "torchvision", "mlflow", "skimage", "scipy", "sklearn", "pandas", "matplotlib", "optuna")

# In a fresh interpreter: every command's `--help` (found by walking the click groups, so a new
# command is checked too), then which heavy top-level packages were imported.
HELP_OF_EVERY_COMMAND = """
import json, sys
import click
from click.testing import CliRunner
from latent_models.cli import cli

def commands(group, path):
    yield path
    for name, command in getattr(group, "commands", {}).items():
        yield from commands(command, [*path, name])

helped = {}
for path in commands(cli, []):
    result = CliRunner().invoke(cli, [*path, "--help"])
    helped[" ".join(path)] = (result.exit_code, "Usage:" in result.output)
heavy = sorted(m for m in json.loads(sys.argv[1]) if m in sys.modules)
print(json.dumps({"helped": helped, "heavy": heavy}))
"""


def test_help_imports_no_heavy_library():
    done = subprocess.run(
        [sys.executable, "-c", HELP_OF_EVERY_COMMAND, json.dumps(HEAVY)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    report = json.loads(done.stdout.splitlines()[-1])
    expected = {"", "ae", "vae", "main", "evaluate", "sweep", "search", "promote"}
    expected |= {"team-access", "team-access apply", "team-access password"}
    assert expected <= set(report["helped"])
    assert {path: ok for path, ok in report["helped"].items() if ok != [0, True]} == {}
    assert report["heavy"] == [], f"`--help` imported {report['heavy']}: import them inside the command that runs"


SHIMS = config.ENTRY_POINTS


@pytest.mark.parametrize("entry_point", sorted(path.stem for path in (REPO / "entrypoints").glob("*.py")))
def test_entry_point_shim_prints_its_options(entry_point):
    """`python entrypoints/<name>.py --help`, as MLproject runs the shims: one option per field."""
    done = subprocess.run(
        [sys.executable, f"entrypoints/{entry_point}.py", "--help"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    options = {f"--{f.name}" for f in dataclasses.fields(SHIMS[entry_point])}
    missing = sorted(o for o in options if o not in done.stdout.split())
    assert missing == [], f"entrypoints/{entry_point}.py --help lacks {missing}:\n{done.stdout}"
