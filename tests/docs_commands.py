"""The shell commands the docs show, and the stand-ins that run them on the fixture.

`shown_blocks()` reads every ```bash block of README.md and docs/ with the comment line before
it: `<!-- not run: reason -->` keeps a block out of the run (it needs a GPU, several hosts, a
hand-set PostgreSQL, hours), and every other block is run by tests/test_docs.py as written,
in a copy of the repository, with `mlflow`, `latent-models` and `make` on PATH being this
module (`python -m tests.docs_commands <tool> ...`). It runs the real command with the
shared tiny settings (`tests.conftest.TINY_RUNS`) in place of the sizes and data the docs
name: the fixture's digits, one epoch, small networks. Servers (`mlflow ui`, `mlflow models
serve`) start in the background and are waited for, so the next block can send requests.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from tests.conftest import REPO, TINY_RUNS
from tests.helpers.servers import NO_JOB_RUNNER, signal_group, start_in_group, wait_until_up

NOT_RUN = re.compile(r"<!--\s*not run:\s*(.*?)\s*-->")
SERVER_LOG_DIR_ENV = "DOCS_SERVER_DIR"  # where the background servers' logs and pids go
CHILD_KEYS = (
    "epochs",
    "batch_size",
    "width",
    "val_size",
    "limit_test",
    "download",
    "iterations",
    "iw_samples",
    "iw_images",
)


@dataclass
class Block:
    page: str
    line: int
    text: str
    not_run: str | None  # the reason, for a block kept out of the run

    def commands(self) -> list[str]:
        """The block's commands, continuation lines joined, comments dropped."""
        joined = re.sub(r"\\\n\s*", " ", self.text)
        return [ln.strip() for ln in joined.splitlines() if ln.strip() and not ln.strip().startswith("#")]


def doc_pages() -> list[Path]:
    """README first, then the site's pages in mkdocs.yml's nav order (the order a reader meets them)."""
    nav = re.findall(r":\s*([\w/.-]+\.md)\s*$", (REPO / "mkdocs.yml").read_text(), flags=re.M)
    pages = [REPO / "docs" / p for p in nav]
    rest = sorted(set((REPO / "docs").rglob("*.md")) - set(pages))
    return [REPO / "README.md", *pages, *rest]


def shown_blocks() -> list[Block]:
    blocks = []
    for page in doc_pages():
        lines = page.read_text().splitlines()
        i = 0
        while i < len(lines):
            if lines[i].strip() == "```bash":
                end = next(j for j in range(i + 1, len(lines)) if lines[j].strip().startswith("```"))
                before = next((lines[j] for j in range(i - 1, -1, -1) if lines[j].strip()), "")
                reason = NOT_RUN.search(before)
                blocks.append(
                    Block(
                        str(page.relative_to(REPO)),
                        i + 1,
                        "\n".join(lines[i + 1 : end]),
                        reason.group(1) if reason else None,
                    )
                )
                i = end
            i += 1
    return blocks


# --- the stand-ins -------------------------------------------------------------------------------


def tiny(entry: str, given: dict[str, str]) -> dict[str, str]:
    """`given` params of an entry point with the tiny settings in place of sizes and data."""
    settings = dict(given)
    settings.update(TINY_RUNS[entry])
    if entry in ("sweep", "search"):
        model = given.get("model", "ae")
        varied = _varied(given.get("grid", "") if entry == "sweep" else given.get("space", ""))
        child = dict(kv.split("=", 1) for kv in shlex.split(given.get("params", "")))
        child.update({k: str(v) for k, v in TINY_RUNS[model].items() if k in CHILD_KEYS and k not in varied})
        settings["params"] = " ".join(f"{k}={v}" for k, v in child.items())
    if entry == "sweep" and "grid" in given:  # two children: the first param's first two values
        grid = [kv.split("=", 1) for kv in shlex.split(given["grid"])]
        settings["grid"] = " ".join(
            f"{k}={','.join(v.split(',')[: 2 if i == 0 else 1])}" for i, (k, v) in enumerate(grid)
        )
    return settings


def _varied(text: str) -> set[str]:
    """The params a sweep's grid or a search's space varies (a fixed param may not repeat one)."""
    if text.endswith((".yaml", ".yml")) and Path(text).is_file():
        import yaml

        return set(yaml.safe_load(Path(text).read_text()))
    return set(re.findall(r"(\w+)=", text))


def _mlflow_run(args: list[str]) -> list[str]:
    """`mlflow run . -e E -P k=v ...` with the tiny settings as its params (MLflow refuses a repeated -P)."""
    entry = args[args.index("-e") + 1] if "-e" in args else "main"
    params, rest, i = {}, [], 0
    while i < len(args):
        if args[i] == "-P":
            key, value = args[i + 1].split("=", 1)
            params[key] = value
            i += 2
        else:
            rest.append(args[i])
            i += 1
    out = [*rest]
    for key, value in tiny(entry, params).items():
        out += ["-P", f"{key}={value}"]
    return out


def _latent_models(args: list[str]) -> list[str]:
    """`latent-models <command> --opt value ...` with the tiny settings as options."""
    if not args or args[0] not in TINY_RUNS:
        return args
    command, given, i = args[0], {}, 1
    while i < len(args):
        given[args[i].removeprefix("--")] = args[i + 1]
        i += 2
    return [command, *(x for k, v in tiny(command, given).items() for x in (f"--{k}", str(v)))]


def _port(args: list[str], default: int) -> int:
    for flag in ("-p", "--port"):
        if flag in args:
            return int(args[args.index(flag) + 1])
    return default


def _start_server(cmd: list[str], port: int, health: str) -> int:
    """Start `cmd` in the background (its own process group, logged), wait until `health` answers;
    a server this run already started on `port` is kept (the docs show some commands twice)."""
    folder = Path(os.environ[SERVER_LOG_DIR_ENV])
    pid_file = folder / f"{port}.pid"
    if pid_file.exists():
        return 0
    log = folder / f"{port}.log"
    proc = start_in_group(cmd, log, env=dict(os.environ, **NO_JOB_RUNNER))
    pid_file.write_text(str(proc.pid))
    # A model server loads its model before it answers: more time than a tracking server.
    problem = wait_until_up(proc, f"http://127.0.0.1:{port}{health}", log, deadline_s=180)
    if problem:
        print(f"{' '.join(cmd)} {problem}")
    return 1 if problem else 0


def run(tool: str, args: list[str]) -> int:
    bin_dir = Path(sys.executable).parent  # the venv's own console scripts, not these stand-ins
    real = {"mlflow": [str(bin_dir / "mlflow")], "latent-models": [str(bin_dir / "latent-models")]}
    if tool == "make":
        if args[:1] != ["train"]:
            print(f"make {' '.join(args)}: only `make train` is run from the docs")
            return 2
        # `make train`'s own command (the Makefile's recipe), on the fixture; the venv is this one.
        recipe = re.search(r"^train:.*\n((?:\t.*\n)+)", (REPO / "Makefile").read_text(), flags=re.M).group(1)
        assert "mlflow run . -e main --env-manager local" in recipe, recipe
        args = ["run", ".", "-e", "main", "--env-manager", "local", "--experiment-name", "latent-models"]
        tool = "mlflow"
    if tool == "mlflow" and args[:1] == ["run"]:
        return subprocess.call([*real["mlflow"], *_mlflow_run(args)])
    if tool == "mlflow" and args[:1] == ["ui"]:
        return _start_server([*real["mlflow"], *args], _port(args, 5000), "/health")
    if tool == "mlflow" and args[:2] == ["models", "serve"]:
        return _start_server([*real["mlflow"], *args], _port(args, 5000), "/ping")
    if tool == "latent-models":
        return subprocess.call([*real["latent-models"], *_latent_models(args)])
    return subprocess.call([*real[tool], *args])


def stop_servers(folder: Path) -> None:
    """SIGTERM to each server's process group (started by a stand-in that has exited since: no waiting on it)."""
    for pid_file in folder.glob("*.pid"):
        signal_group(int(pid_file.read_text()))


if __name__ == "__main__":
    sys.exit(run(sys.argv[1], sys.argv[2:]))
