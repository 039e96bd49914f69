"""molecule/shared/serving_checks.py against tests/gateway/localstack (a gateway converged by
the role in a container, two stand-in model hosts behind mTLS edges, all on loopback).

    tests/gateway/localstack up --wheelhouse OUT/litellm-<id>.tar --pace
    .venv/bin/pytest -s -p no:cacheprovider tests/gateway

Not part of `make unit`: it needs the localstack up (and says so when it is not).
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "molecule" / "shared"))
from serving_checks import *  # noqa: F403 - the shared checks are this module's tests
from serving_checks import Failover, Serving, Unavailable

_loader = importlib.machinery.SourceFileLoader(
    "localstack", str(Path(__file__).with_name("localstack"))
)
localstack = importlib.util.module_from_spec(importlib.util.spec_from_loader("localstack", _loader))
_loader.exec_module(localstack)


def _tool(*args: str) -> None:
    subprocess.run([sys.executable, str(Path(__file__).with_name("localstack")), *args], check=True)


def _pool_admin(command: str) -> None:
    """HAProxy's runtime API in the gateway container (maintenance for every pool server)."""
    script = (
        "import socket,sys; s=socket.socket(socket.AF_UNIX); "
        "s.connect('/run/haproxy/admin.sock'); s.sendall(sys.argv[1].encode()+b'\\n'); "
        "s.shutdown(socket.SHUT_WR); print(s.makefile().read())"
    )
    localstack.podman("exec", localstack.CONTAINER, "python3", "-c", script, command)


def _maintenance(pool: str, servers: list[str], state: str) -> None:
    for server in servers:
        _pool_admin(f"{state} server {pool}/{server}")


@pytest.fixture(scope="session")
def serving() -> Serving:
    path = localstack.STATE / "state.json"
    if not path.exists():
        pytest.fail(
            f"the localstack is not up: tests/gateway/localstack up --wheelhouse ... ({path})"
        )
    _tool("restore")  # a revocation test of an earlier run took a key away
    state = json.loads(path.read_text())
    r1 = "pool_fleet_deepseek-r1_32b"
    gemma = "pool_fleet_gemma3_4b"
    return Serving(
        base_url=state["base_url"],
        ca_file=state["ca_file"],
        keys=state["keys"],
        limited_model="gemma3",
        rated_rpm=3,
        reasoning_model="deepseek-r1",
        general_model="gemma3",
        public_names=[
            "deepseek-r1",
            "fleet/deepseek-r1:1.5b",
            "fleet/deepseek-r1:32b",
            "fleet/gemma3:4b",
            "gemma3",
        ],
        revoke=lambda client: _tool("revoke", client),
        processes=localstack.processes,
        logs=localstack.logs,
        failover=Failover(
            model="fleet/gemma3:4b",
            hosts=["edge-b", "edge-a"],
            stop=lambda host: _tool("stop", host),
            hang=lambda host: _tool("hang", host),
            resume=lambda host: _tool("resume", host),
            pool=gemma,
        ),
        unavailable=[
            Unavailable(
                model="fleet/deepseek-r1:32b",
                stop_all=lambda: _maintenance(r1, ["edge-a", "edge-b"], "disable"),
                resume_all=lambda: _maintenance(r1, ["edge-a", "edge-b"], "enable"),
                fallback="fleet/deepseek-r1:1.5b",
            ),
            Unavailable(
                model="gemma3",
                stop_all=lambda: _maintenance(gemma, ["edge-a", "edge-b"], "disable"),
                resume_all=lambda: _maintenance(gemma, ["edge-a", "edge-b"], "enable"),
            ),
        ],
        metrics_url=state["metrics_url"],
        litellm_metrics_url=state["litellm_metrics_url"],
        long_stream_tokens=200,
    )
