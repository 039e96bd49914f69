"""Helpers for molecule verifiers: run playbooks against the scenario's hosts and read the recap.

Used for what testinfra alone cannot show: that a check-mode run on a converged host changes
nothing, that a bad input fails with the right message before anything changes, that an
upgrade followed by a downgrade keeps the models. Runs `ansible-playbook` with molecule's
inventory (SSH to the scenario's hosts) and the project's ansible.cfg.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

RECAP = re.compile(r"^(?P<host>\S+)\s*:\s*(?P<counts>(?:\w+=\d+\s*)+)$")


@dataclass
class PlaybookRun:
    rc: int
    output: str
    recap: dict[str, dict[str, int]] = field(default_factory=dict)

    def changed(self, host: str | None = None) -> int:
        hosts = [host] if host else list(self.recap)
        return sum(self.recap[h]["changed"] for h in hosts)

    def failed(self, host: str | None = None) -> int:
        hosts = [host] if host else list(self.recap)
        return sum(self.recap[h]["failed"] + self.recap[h]["unreachable"] for h in hosts)


def parse_recap(output: str) -> dict[str, dict[str, int]]:
    recap: dict[str, dict[str, int]] = {}
    in_recap = False
    for line in output.splitlines():
        if line.startswith("PLAY RECAP"):
            in_recap = True
            continue
        match = RECAP.match(line.strip()) if in_recap else None
        if match:
            counts = dict(item.split("=") for item in match["counts"].split())
            recap[match["host"]] = {key: int(value) for key, value in counts.items()}
    return recap


def scenario_dir() -> Path:
    return Path(os.environ["MOLECULE_SCENARIO_DIRECTORY"])


def project_dir() -> Path:
    return Path(os.environ["MOLECULE_PROJECT_DIRECTORY"])


def ansible_env() -> dict[str, str]:
    """The environment `make` gives Ansible: the project's config, roles and collection."""
    root = project_dir()
    return dict(
        os.environ,
        ANSIBLE_CONFIG=str(root / "ansible.cfg"),
        # ansible.cfg keeps facts between runs; a scenario's hosts are new each time.
        ANSIBLE_CACHE_PLUGIN="ansible.builtin.memory",
        ANSIBLE_ROLES_PATH=str(root / "roles"),
        ANSIBLE_COLLECTIONS_PATH=str(root / "collections"),
        ANSIBLE_FORCE_COLOR="0",
        ANSIBLE_NOCOLOR="1",
        ANSIBLE_CALLBACK_RESULT_FORMAT="yaml",
    )


def run_playbook(
    playbook: str | Path = "converge.yml",
    *args: str,
    extra_vars: dict | None = None,
    check: bool = False,
    diff: bool = False,
    limit: str | None = None,
    inventory: str | Path | None = None,
    timeout: float = 900,
) -> PlaybookRun:
    """Run a playbook (relative paths: the scenario directory) against the scenario's hosts
    (molecule's inventory unless another is given); `args` go to ansible-playbook as they are."""
    path = Path(playbook)
    if not path.is_absolute():
        path = scenario_dir() / path
    env = ansible_env()
    source = str(inventory or os.environ["MOLECULE_INVENTORY_FILE"])
    command = ["ansible-playbook", "-i", source, str(path), *args]
    if extra_vars:
        command += ["-e", json.dumps(extra_vars)]
    if check:
        command.append("--check")
    if diff:
        command.append("--diff")
    if limit:
        command += ["--limit", limit]
    result = subprocess.run(
        command, capture_output=True, text=True, env=env, timeout=timeout, check=False
    )
    output = result.stdout + result.stderr
    return PlaybookRun(result.returncode, output, parse_recap(output))


def write_tiny_gguf(path: str | Path, *, blocks: int = 1, context: int = 2048) -> Path:
    """A tiny but real GGUF file (the `gguf` package), enough for `FROM ./tiny.gguf`."""
    import gguf
    import numpy as np

    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_context_length(context)
    writer.add_block_count(blocks)
    writer.add_embedding_length(8)
    writer.add_head_count(1)
    writer.add_tensor("token_embd.weight", np.zeros((4, 8), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return Path(path)
