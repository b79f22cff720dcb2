"""The server processes the tests and the benchmarks start: `mlflow models serve` (ModelServer),
`mlflow server` (mlflow_server), or any command that answers HTTP (ServerProcess).

Each runs in its own process group (so that stopping it stops its uvicorn workers too), logs
stdout and stderr to one file, is waited for until its health URL answers 200, and is stopped
by the id of the group it started. No pytest here: `benchmarks/serving.py` uses it too.

    with ModelServer("models:/latent-denoiser@champion", tmp / "serve.log", tracking_uri=uri) as server:
        server.post({"inputs": ...})
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import requests

SERVER_DEADLINE_S = 120  # a tracking server's start, or a tiny model's load, on a busy 2-core CPU
STOP_TIMEOUT_S = 15
# MLflow 3's server job runner: none of the servers the tests start needs server-side jobs, and it
# starts seven huey consumer processes and leaves a folder in /dev/shm behind.
NO_JOB_RUNNER = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}

_TAKEN: set[int] = set()


def mlflow_cli() -> str:
    """This interpreter's `mlflow` console script (the venv's, whatever PATH says)."""
    return str(Path(sys.executable).parent / "mlflow")


def free_port() -> int:
    """A loopback port nothing listens on, and not one handed out before in this process."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in _TAKEN:
            _TAKEN.add(port)
            return port


def start_in_group(cmd: list[str], log: Path, env: dict | None = None, cwd: Path | None = None) -> subprocess.Popen:
    """`cmd` in a new session (its own process group), stdout and stderr to `log`."""
    with open(log, "wb") as out:
        return subprocess.Popen(cmd, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def wait_until_up(proc: subprocess.Popen, url: str, log: Path, deadline_s: float = SERVER_DEADLINE_S) -> str | None:
    """None once `url` answers 200; else why not (the process exited, or `deadline_s` passed),
    with the end of its log."""
    deadline = time.monotonic() + deadline_s
    while True:
        if proc.poll() is not None:
            return f"exited with {proc.returncode}:\n{log.read_text()[-3000:]}"
        try:
            if requests.get(url, timeout=5).status_code == 200:
                return None
        except requests.RequestException:  # not listening yet, or slow to answer on a busy CPU
            pass
        if time.monotonic() >= deadline:
            return f"not up after {deadline_s:.0f} s:\n{log.read_text()[-3000:]}"
        time.sleep(0.25)


def signal_group(pid: int, sig: int = signal.SIGTERM) -> bool:
    """Send `sig` to the process group `pid` leads (one this code started, by its id); False when it is gone."""
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        return False
    return True


def stop_group(proc: subprocess.Popen, timeout_s: float = STOP_TIMEOUT_S) -> None:
    """SIGTERM to `proc`'s process group, SIGKILL if it has not exited after `timeout_s`; reaped.
    The whole group, even when its leader is gone already: a worker may outlive it."""
    if not signal_group(proc.pid, signal.SIGTERM):
        proc.poll()
        return
    try:
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        signal_group(proc.pid, signal.SIGKILL)
        proc.wait(timeout=timeout_s)


class ServerProcess:
    """`cmd`, serving on 127.0.0.1:`port`, started at once in its own process group (log: `log`).
    `wait_ready()` raises AssertionError, with the end of the log, unless `health` answers 200 in
    time; `stop()` stops the group. As a context manager: ready on entering, stopped on leaving."""

    def __init__(
        self,
        cmd: list[str],
        port: int,
        health: str,
        log: Path,
        env: dict | None = None,
        cwd: Path | None = None,
        deadline_s: float = SERVER_DEADLINE_S,
        name: str | None = None,
    ):
        self.cmd, self.port, self.log, self.deadline_s = cmd, port, Path(log), deadline_s
        self.name = name or f"{Path(cmd[0]).name} {cmd[1]}"  # e.g. `mlflow server`, in what wait_ready raises
        self.url = f"http://127.0.0.1:{port}"
        self.health = health
        self.proc = start_in_group(cmd, self.log, env, cwd)

    def wait_ready(self, deadline_s: float | None = None) -> None:
        problem = wait_until_up(self.proc, self.url + self.health, self.log, deadline_s or self.deadline_s)
        if problem:
            raise AssertionError(f"{self.name} {problem}")

    def stop(self) -> None:
        stop_group(self.proc)

    def log_text(self) -> str:
        return self.log.read_text()

    def __enter__(self) -> ServerProcess:
        try:
            self.wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def model_server_env(tracking_uri: str | None = None, env: dict | None = None) -> dict:
    """This process's environment for `mlflow models serve` / `predict`: the venv's bin first on
    PATH, MLFLOW_TRACKING_URI set to `tracking_uri` (dropped when None), no MLFLOW_RUN_ID; `env` added."""
    out = dict(os.environ, PATH=str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", ""))
    if tracking_uri is None:
        out.pop("MLFLOW_TRACKING_URI", None)
    else:
        out["MLFLOW_TRACKING_URI"] = tracking_uri
    out.pop("MLFLOW_RUN_ID", None)
    out.update(env or {})
    return out


def model_serve_command(model_uri: str, port: int) -> list[str]:
    """`mlflow models serve -m <model_uri> --env-manager local -h 127.0.0.1 -p <port>` (one uvicorn worker)."""
    return [
        mlflow_cli(),
        "models",
        "serve",
        "-m",
        model_uri,
        "--env-manager",
        "local",
        "-h",
        "127.0.0.1",
        "-p",
        str(port),
    ]


class ModelServer(ServerProcess):
    """`mlflow models serve -m <model_uri> --env-manager local` on a free loopback port, ready when
    /ping answers. Its environment: model_server_env(tracking_uri, env), taken when it starts."""

    def __init__(
        self,
        model_uri: str,
        log: Path,
        tracking_uri: str | None = None,
        env: dict | None = None,
        port: int | None = None,
        deadline_s: float = SERVER_DEADLINE_S,
    ):
        port = port or free_port()
        super().__init__(
            model_serve_command(model_uri, port),
            port,
            "/ping",
            log,
            env=model_server_env(tracking_uri, env),
            deadline_s=deadline_s,
            name="mlflow models serve",
        )

    def post(self, body, params=None, raw: bool = False, headers=None, timeout: float = 60) -> requests.Response:
        """POST /invocations: `body` as JSON (with `params` added), or as it is when `raw`."""
        if not raw:
            if params is not None:
                body = {**body, "params": params}
            body = json.dumps(body)
        headers = {"Content-Type": "application/json"} if headers is None else headers
        return requests.post(f"{self.url}/invocations", data=body, headers=headers, timeout=timeout)


@contextlib.contextmanager
def mlflow_server(
    backend_store_uri: str, root: Path, port: int | None = None, app_name: str | None = None, env: dict | None = None
):
    """`mlflow server --backend-store-uri <uri> --artifacts-destination <root>/artifacts
    --serve-artifacts` on 127.0.0.1:<port> (a free one when None), one worker, in its own process
    group (log: <root>/server.log). Yields its URL once /health answers; stops the group on leaving.
    `app_name` (e.g. `latent-models-auth`) is passed as `--app-name`, `env` added to its environment.

    Without MLflow 3's job runner (NO_JOB_RUNNER)."""
    root.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    cmd = [
        mlflow_cli(),
        "server",
        "--backend-store-uri",
        backend_store_uri,
        "--artifacts-destination",
        str(root / "artifacts"),
        "--serve-artifacts",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
        *(["--app-name", app_name] if app_name else []),
    ]
    server_env = dict(os.environ, **NO_JOB_RUNNER, **(env or {}))
    server_env.pop("MLFLOW_TRACKING_URI", None)
    with ServerProcess(cmd, port, "/health", root / "server.log", env=server_env, cwd=root) as server:
        yield server.url
