"""A lab hardware profile on the controller: the nvidia-smi and lspci stand-ins first in PATH,
answering from the profile, and a module run against localhost with them (as on a lab host).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
STANDINS = REPO / "tests" / "standins"
ANSIBLE = REPO / ".venv" / "bin" / "ansible"


def lab_env(tmp_path: Path, profile: str) -> dict:
    """The environment in which the probe sees lab profile `profile`."""
    root = tmp_path / "root"
    (root / "etc" / "localllm-lab").mkdir(parents=True)
    (root / "opt" / "localllm-lab" / "share").mkdir(parents=True)
    hardware = STANDINS / "hardware"
    shutil.copy(hardware / "profiles" / f"{profile}.json", root / "etc/localllm-lab/hardware.json")
    shutil.copy(hardware / "gpus.json", root / "opt/localllm-lab/share/gpus.json")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    shutil.copy(STANDINS / "lspci", bin_dir / "lspci")
    if json.loads((hardware / "profiles" / f"{profile}.json").read_text())["driver"]:
        shutil.copy(STANDINS / "nvidia-smi", bin_dir / "nvidia-smi")
    env = dict(os.environ)
    env.update(
        LOCALLLM_LAB_ROOT=str(root),
        PATH=f"{bin_dir}:/usr/bin:/bin",
        ANSIBLE_CONFIG=str(REPO / "ansible.cfg"),
        ANSIBLE_LOAD_CALLBACK_PLUGINS="1",
        ANSIBLE_STDOUT_CALLBACK="ansible.builtin.json",
        ANSIBLE_PYTHON_INTERPRETER=shutil.which("python3", path="/usr/bin:/bin") or "python3",
    )
    return env


def run_module(env: dict, module: str, args: str) -> tuple[int, dict]:
    """`ansible localhost -m MODULE -a ARGS`: its exit status and the module's result."""
    command = [str(ANSIBLE), "-i", "localhost,", "-c", "local", "localhost", "-m", module]
    result = subprocess.run(
        [*command, "-a", args],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        check=False,
        timeout=120,
    )
    output = json.loads(result.stdout)
    return result.returncode, output["plays"][0]["tasks"][0]["hosts"]["localhost"]
