"""Test support for the Ollama stand-in: build the artifact once, run `ollama serve` on an
ephemeral loopback port, run the CLI, serve a registry. Used by tests/unit/test_ollama_standin*.

The stand-in runs under the machine's /usr/bin/python3 when that interpreter has numpy (as a
lab host has from python3-numpy), otherwise under the test's interpreter.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
VERSION = "0.32.15"


def host_python() -> str:
    system = "/usr/bin/python3"
    if os.path.exists(system):
        probe = subprocess.run([system, "-c", "import numpy"], capture_output=True, check=False)
        if probe.returncode == 0:
            return system
    return sys.executable


def build_artifact(out: Path, version: str = VERSION, broken: str = "") -> Path:
    """Build and extract; returns the install prefix (with bin/ollama)."""
    command = [sys.executable, str(HERE / "build"), "--version", version, "--out", str(out)]
    if broken:
        command += ["--broken", broken]
    subprocess.run(command, check=True, capture_output=True)
    prefix = out / f"prefix-{version}{'-' + broken if broken else ''}"
    prefix.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        ["tar", "-C", str(prefix), "-xzf", str(out / f"v{version}" / "ollama-linux-amd64.tgz")],
        check=True,
    )
    return prefix


def make_models(out: Path) -> Path:
    subprocess.run(
        [sys.executable, str(HERE / "make-models"), "--out", str(out)],
        check=True,
        capture_output=True,
    )
    return out


@dataclass
class Result:
    code: int
    stdout: str
    stderr: str

    @property
    def clean_stderr(self) -> str:
        """stderr without the progress display's escape sequences."""
        return re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", self.stderr)


@dataclass
class Ollama:
    prefix: Path
    home: Path
    python: str = field(default_factory=host_python)
    host: str = "127.0.0.1:11434"
    extra_env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen | None = None
    log: list[str] = field(default_factory=list)

    @property
    def models(self) -> Path:
        return self.home / "models"

    def env(self, **overrides: str) -> dict[str, str]:
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(self.home),
            "OLLAMA_HOST": self.host,
            "OLLAMA_MODELS": str(self.models),
            "LANG": "C.UTF-8",
            "TZ": "UTC",
        }
        env.update(self.extra_env)
        env.update(overrides)
        return env

    def run(
        self, *args: str, stdin: str | None = None, cwd: Path | None = None, **env: str
    ) -> Result:
        proc = subprocess.run(
            [self.python, str(self.prefix / "bin" / "ollama"), *args],
            input=stdin if stdin is not None else "",
            capture_output=True,
            text=True,
            env=self.env(**env),
            cwd=cwd,
            timeout=60,
            check=False,
        )
        return Result(proc.returncode, proc.stdout, proc.stderr)

    def start(self, **env: str) -> Ollama:
        self.home.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [self.python, str(self.prefix / "bin" / "ollama"), "serve"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env=self.env(OLLAMA_HOST="127.0.0.1:0", **env),
        )
        listening: queue.Queue[str] = queue.Queue()

        def drain(stream: Any) -> None:  # keeps the pipe from filling up, records the log
            for line in stream:
                self.log.append(line)
                match = re.search(r"Listening on (\S+) \(version", line)
                if match:
                    listening.put(match.group(1))
            listening.put("")

        threading.Thread(target=drain, args=(self.proc.stderr,), daemon=True).start()
        try:
            address = listening.get(timeout=20)
        except queue.Empty:
            address = ""
        if not address:
            self.stop()
            raise RuntimeError("ollama serve did not start:\n" + "".join(self.log))
        self.host = address
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    # ---------------------------------------------------------------- HTTP
    def request(
        self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
    ) -> tuple[int, dict[str, str], bytes]:
        host, port = self.host.rsplit(":", 1)
        conn = http.client.HTTPConnection(host, int(port), timeout=30)
        data = body if isinstance(body, (bytes, type(None))) else json.dumps(body).encode()
        conn.request(method, path, body=data, headers=headers or {})
        resp = conn.getresponse()
        payload = resp.read()
        result = resp.status, {k.lower(): v for k, v in resp.getheaders()}, payload
        conn.close()
        return result

    def post(self, path: str, body: Any) -> tuple[int, Any]:
        status, _headers, payload = self.request("POST", path, body)
        return status, json.loads(payload) if payload else None

    def ndjson(self, path: str, body: Any) -> tuple[int, str, list[dict]]:
        status, headers, payload = self.request("POST", path, body)
        lines = [json.loads(line) for line in payload.decode().splitlines() if line.strip()]
        return status, headers.get("content-type", ""), lines


@contextlib.contextmanager
def serving(prefix: Path, home: Path, **env: str) -> Iterator[Ollama]:
    server = Ollama(prefix, home).start(**env)
    try:
        yield server
    finally:
        server.stop()


@contextlib.contextmanager
def registry(root: Path, *extra: str) -> Iterator[int]:
    proc = subprocess.Popen(
        [sys.executable, str(HERE / "registry-server"), "--root", str(root), "--port", "0", *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        match = re.search(r":(\d+)$", line.strip())
        if not match:
            raise RuntimeError(
                f"registry-server did not start: {line}{proc.stderr.read() if proc.stderr else ''}"
            )
        yield int(match.group(1))
    finally:
        proc.terminate()
        proc.wait(10)
