"""Every benchmark script still starts: its imports resolve and its command answers --help (a
script that moved a name another one imports breaks only when someone runs it)."""

import json
import subprocess
import sys

from tests.conftest import REPO

SCRIPTS = sorted(p.stem for p in (REPO / "benchmarks").glob("*.py"))

HELP_OF_EVERY_SCRIPT = """
import json, sys
from click.testing import CliRunner
sys.path.insert(0, sys.argv[1])
answers = {}
for name in json.loads(sys.argv[2]):
    try:
        module = __import__(name)
        result = CliRunner().invoke(module.main, ["--help"])
        answers[name] = [result.exit_code, "Usage:" in result.output]
    except Exception as exc:  # an import that no longer resolves
        answers[name] = [repr(exc)[:300], False]
print(json.dumps(answers))
"""


def test_every_benchmark_script_answers_help():
    assert len(SCRIPTS) >= 10
    done = subprocess.run(
        [sys.executable, "-c", HELP_OF_EVERY_SCRIPT, str(REPO / "benchmarks"), json.dumps(SCRIPTS)],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    answers = json.loads(done.stdout.strip().splitlines()[-1])
    assert answers == {name: [0, True] for name in SCRIPTS}
