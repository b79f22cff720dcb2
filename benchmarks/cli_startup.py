"""What `latent-models --help` costs, beside `mlflow --help`: CPU time and peak memory.

    python benchmarks/cli_startup.py              # 5 runs of each command, interleaved
    python benchmarks/cli_startup.py --repeat 11

Each command runs as a child process (output discarded) and is reaped with `os.wait4`, whose
rusage is that child's own: CPU time (user + sys), peak resident memory (ru_maxrss) and the
wall time around it. One unmeasured round first warms the page cache; then the rounds run the
commands in turn, so a slow spell of the machine hits all of them alike. The table shows the
medians and each command's ratio to `mlflow --help`.
Goal: `latent-models --help` and `latent-models ae --help` at most 0.2x the CPU time of
`mlflow --help` and at most 150 MiB peak; the exit status is 1 when a command misses it.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import click

BASELINE = "mlflow --help"
MAX_CPU_RATIO = 0.2
MAX_PEAK_MIB = 150.0


def _executable(name: str) -> str:
    """The console script beside this Python (the project's venv), else the one on PATH."""
    beside = Path(sys.executable).parent / name
    found = str(beside) if beside.exists() else shutil.which(name)
    if not found:
        raise click.ClickException(f"{name} not found beside {sys.executable} or on PATH; install the project")
    return found


def measure(argv: list[str]) -> dict[str, float]:
    """Run `argv` once: its CPU seconds (user + sys), peak RSS in MiB and wall seconds."""
    start = time.perf_counter()
    child = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - start
    child.returncode = os.waitstatus_to_exitcode(status)
    stderr = child.stderr.read().decode(errors="replace")
    child.stderr.close()
    if child.returncode != 0:
        raise click.ClickException(f"{' '.join(argv)} exited {child.returncode}:\n{stderr}")
    peak_mib = usage.ru_maxrss / 1024 if sys.platform != "darwin" else usage.ru_maxrss / 2**20  # KiB; bytes on macOS
    return {"cpu_s": usage.ru_utime + usage.ru_stime, "peak_mib": peak_mib, "wall_s": wall}


@click.command()
@click.option("--repeat", default=5, show_default=True, help="measured runs of each command (median reported)")
def main(repeat: int) -> None:
    latent_models, mlflow = _executable("latent-models"), _executable("mlflow")
    commands = {
        "latent-models --help": [latent_models, "--help"],
        "latent-models ae --help": [latent_models, "ae", "--help"],
        BASELINE: [mlflow, "--help"],
    }
    for argv in commands.values():  # warm-up: files into the page cache, .pyc written
        measure(argv)
    runs: dict[str, list[dict]] = {name: [] for name in commands}
    for _ in range(repeat):
        for name, argv in commands.items():
            runs[name].append(measure(argv))
    median = {name: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for name, rs in runs.items()}

    base = median[BASELINE]
    print(f"median of {repeat} runs each, interleaved; python {sys.version.split()[0]}, {os.cpu_count()} CPUs")
    print(f"{'command':<26}{'CPU s':>8}{'peak MiB':>10}{'wall s':>8}{'CPU vs mlflow':>15}{'peak vs mlflow':>16}")
    missed = []
    for name, m in median.items():
        cpu_ratio, peak_ratio = m["cpu_s"] / base["cpu_s"], m["peak_mib"] / base["peak_mib"]
        print(
            f"{name:<26}{m['cpu_s']:>8.2f}{m['peak_mib']:>10.0f}{m['wall_s']:>8.2f}"
            f"{cpu_ratio:>14.2f}x{peak_ratio:>15.2f}x"
        )
        if name != BASELINE and (cpu_ratio > MAX_CPU_RATIO or m["peak_mib"] > MAX_PEAK_MIB):
            missed.append(name)
    goal = f"goal: <= {MAX_CPU_RATIO}x the CPU time of `{BASELINE}` and <= {MAX_PEAK_MIB:.0f} MiB peak"
    if missed:
        print(f"{goal}: missed by {', '.join(missed)}")
        sys.exit(1)
    print(f"{goal}: met")


if __name__ == "__main__":
    main()
