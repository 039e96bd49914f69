"""The opt-in Mitogen strategy (docs/scaling.md) with the pinned ansible-core: the same play
gives the same results under Ansible's linear strategy and under mitogen_linear — a file
written, a template rendered, a command read, the collection's own `download` module fetching
a file by its sha256 and refusing a wrong one, check mode with a diff — and a second run
changes nothing. Runs on localhost (local connection) against a loopback HTTP server."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from pathlib import Path

import pytest
import yaml
from json_http import serve_json

pytestmark = pytest.mark.controller  # ansible-playbook runs the play

REPO = Path(__file__).resolve().parents[2]
VENV_PYTHON = REPO / ".venv" / "bin" / "python"
PAYLOAD = {"model": "deepseek-r1:1.5b"}


def _mitogen_strategies() -> Path:
    found = subprocess.run(
        [
            str(VENV_PYTHON),
            "-c",
            "import ansible_mitogen, os; print(os.path.dirname(ansible_mitogen.__file__))",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    return Path(found.stdout.strip()) / "plugins" / "strategy"


def _play(tmp_path: Path, base_url: str, sha256: str) -> list[dict]:
    out = tmp_path / "out"
    return [
        {
            "name": "Strategy check",
            "hosts": "localhost",
            "connection": "local",
            "gather_facts": False,
            "vars": {"out": str(out), "ansible_python_interpreter": str(VENV_PYTHON)},
            "tasks": [
                {
                    "name": "Make the directory",
                    "ansible.builtin.file": {
                        "path": "{{ out }}",
                        "state": "directory",
                        "mode": "0750",
                    },
                },
                {
                    "name": "Write a file",
                    "ansible.builtin.copy": {
                        "content": "num_ctx 4096\n",
                        "dest": "{{ out }}/settings",
                        "mode": "0640",
                    },
                },
                {
                    "name": "Render a template",
                    "ansible.builtin.template": {
                        "src": str(tmp_path / "unit.j2"),
                        "dest": "{{ out }}/unit",
                        "mode": "0644",
                    },
                },
                {
                    "name": "Read a command",
                    "ansible.builtin.command": {"argv": ["cat", "{{ out }}/settings"]},
                    "register": "read",
                    "changed_when": False,
                },
                {
                    "name": "Fetch by sha256 with the collection's module",
                    "localllm.fleet.download": {
                        "url": f"{base_url}/blob",
                        "dest": "{{ out }}/blob",
                        "checksum": f"sha256:{sha256}",
                    },
                },
                {
                    "name": "Refuse a wrong sha256",
                    "localllm.fleet.download": {
                        "url": f"{base_url}/blob",
                        "dest": "{{ out }}/wrong",
                        "checksum": "sha256:" + "0" * 64,
                    },
                    "register": "wrong",
                    "failed_when": False,
                },
                {
                    "name": "Note which process runs the modules",
                    "ansible.builtin.command": {"argv": ["sh", "-c", "echo $PPID"]},
                    "register": "runner1",
                    "changed_when": False,
                },
                {
                    "name": "Note which process runs the modules, again",
                    "ansible.builtin.command": {"argv": ["sh", "-c", "echo $PPID"]},
                    "register": "runner2",
                    "changed_when": False,
                },
                {
                    "name": "Report",
                    "ansible.builtin.copy": {
                        "content": (
                            "{{ {'read': read.stdout, 'wrong_msg': wrong.msg | default(''),"
                            " 'runners': [runner1.stdout, runner2.stdout]} | to_json }}"
                        ),
                        "dest": "{{ out }}/report.json",
                        "mode": "0644",
                    },
                    "check_mode": False,
                    # The process ids differ from run to run: not a change of the play's.
                    "changed_when": False,
                },
            ],
        }
    ]


def _run(tmp_path: Path, strategy: str, *extra: str) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env["ANSIBLE_CONFIG"] = str(REPO / "ansible.cfg")
    env["ANSIBLE_STRATEGY"] = strategy
    env["ANSIBLE_STRATEGY_PLUGINS"] = str(_mitogen_strategies())
    env["ANSIBLE_LOCALHOST_WARNING"] = "false"
    env["ANSIBLE_INVENTORY_UNPARSED_WARNING"] = "false"
    env["ANSIBLE_FACT_CACHING"] = "memory"
    return subprocess.run(
        [
            str(REPO / ".venv" / "bin" / "ansible-playbook"),
            "-i",
            "localhost,",
            str(tmp_path / "play.yml"),
            *extra,
        ],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        cwd=REPO,
    )


def _recap(output: str) -> dict[str, int]:
    line = next(
        item for item in output.splitlines() if item.startswith("localhost ") and "ok=" in item
    )
    return {k: int(v) for k, v in (part.split("=") for part in line.split(":", 1)[1].split())}


@pytest.mark.parametrize("strategy", ["linear", "mitogen_linear"])
def test_the_same_play_gives_the_same_results_under_each_strategy(tmp_path, strategy):
    body = json.dumps(PAYLOAD).encode()
    (tmp_path / "unit.j2").write_text(
        "[Service]\nEnvironment=OLLAMA_HOST={{ '127.0.0.1:11434' }}\n"
    )
    with serve_json({"/blob": PAYLOAD}) as base_url:
        (tmp_path / "play.yml").write_text(
            yaml.safe_dump(_play(tmp_path, base_url, hashlib.sha256(body).hexdigest()))
        )
        first = _run(tmp_path, strategy)
        assert first.returncode == 0, first.stdout + first.stderr
        assert _recap(first.stdout)["changed"] == 4  # directory, file, template, download
        out = tmp_path / "out"
        assert (out / "settings").read_text() == "num_ctx 4096\n"
        assert oct((out / "settings").stat().st_mode & 0o777) == "0o640"
        assert "OLLAMA_HOST=127.0.0.1:11434" in (out / "unit").read_text()
        assert json.loads((out / "blob").read_bytes()) == PAYLOAD
        assert not (out / "wrong").exists()
        report = json.loads((out / "report.json").read_text())
        assert report["read"] == "num_ctx 4096"
        assert "0" * 64 in report["wrong_msg"], report
        # Under Mitogen one persistent interpreter runs every task's module (that is where
        # the time goes: no Python start per task); under Ansible's strategy each task starts
        # its own.
        same_runner = report["runners"][0] == report["runners"][1]
        assert same_runner is strategy.startswith("mitogen"), report["runners"]

        again = _run(tmp_path, strategy)
        assert again.returncode == 0, again.stdout + again.stderr
        assert _recap(again.stdout)["changed"] == 0, again.stdout

        # Check mode with a diff: a change is predicted and shown, nothing written.
        (out / "settings").write_text("num_ctx 2048\n")
        check = _run(tmp_path, strategy, "--check", "--diff")
        assert check.returncode == 0, check.stdout + check.stderr
        assert "+num_ctx 4096" in check.stdout and "-num_ctx 2048" in check.stdout
        assert (out / "settings").read_text() == "num_ctx 2048\n"
