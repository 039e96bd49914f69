"""Paths, names and labels the lab shares, and how it runs commands (podman among them)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

# tests/lab/labctl/common.py: the repository is three levels up.
ROOT = Path(__file__).resolve().parents[3]
STATE = ROOT / ".lab"
LAB_DIR = ROOT / "tests" / "lab"
STANDINS = ROOT / "tests" / "standins"
CONTAINERS_CONF = LAB_DIR / "containers.conf"

NETWORK = "localllm-lab"
PREFIX = "localllm-lab-"
LABEL = "io.localllm.lab"
IMAGE_REPO = "localhost/localllm-lab"
BASE_REPO = "localhost/localllm-lab-base"


class LabError(Exception):
    """A failure with a message that says what to do."""


def log(message: str) -> None:
    print(f"lab: {message}", flush=True)


def run(args: list[str], *, check: bool = True, capture: bool = True, **kwargs):
    env = dict(os.environ, CONTAINERS_CONF=str(CONTAINERS_CONF))
    result = subprocess.run(args, capture_output=capture, text=True, env=env, check=False, **kwargs)
    if check and result.returncode != 0:
        detail = (result.stderr or result.stdout or "").strip()
        raise LabError(f"{' '.join(args[:4])} failed (exit {result.returncode}): {detail[-2000:]}")
    return result


def podman(*args: str, check: bool = True, **kwargs):
    return run(["podman", *args], check=check, **kwargs)
