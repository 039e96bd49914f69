"""The opt-in Mitogen strategy (docs/scaling.md) with the pinned ansible-core: the same play
gives the same results under Ansible's linear strategy and under mitogen_linear — a file
written, a template rendered, a command read, the collection's own `download` module fetching
a file by its sha256 and refusing a wrong one, check mode with a diff — and a second run
changes nothing. Runs on localhost (local connection) against a loopback HTTP server."""

from __future__ import annotations

import hashlib
import importlib.util
import json
from pathlib import Path

import pytest
from json_http import serve_json
from role_testing import PlaybookRun, ansible_playbook

pytestmark = pytest.mark.controller  # ansible-playbook runs the play

# Where the pinned mitogen keeps its strategy plugins (found, not imported).
STRATEGIES = Path(importlib.util.find_spec("ansible_mitogen").submodule_search_locations[0])
STRATEGIES = STRATEGIES / "plugins" / "strategy"
PAYLOAD = {"model": "deepseek-r1:1.5b"}


def _play(tmp_path: Path, base_url: str, sha256: str) -> list[dict]:
    out = tmp_path / "out"
    return [
        {
            "name": "Strategy check",
            "hosts": "localhost",
            "gather_facts": False,
            "vars": {"out": str(out)},
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


def _run(tmp_path: Path, plays: list[dict], strategy: str, *args: str) -> PlaybookRun:
    env = {"ANSIBLE_STRATEGY": strategy, "ANSIBLE_STRATEGY_PLUGINS": str(STRATEGIES)}
    return ansible_playbook(tmp_path, plays, *args, env=env)


@pytest.mark.parametrize("strategy", ["linear", "mitogen_linear"])
def test_the_same_play_gives_the_same_results_under_each_strategy(tmp_path, strategy):
    body = json.dumps(PAYLOAD).encode()
    (tmp_path / "unit.j2").write_text(
        "[Service]\nEnvironment=OLLAMA_HOST={{ '127.0.0.1:11434' }}\n"
    )
    with serve_json({"/blob": PAYLOAD}) as base_url:
        plays = _play(tmp_path, base_url, hashlib.sha256(body).hexdigest())
        first = _run(tmp_path, plays, strategy)
        assert first.rc == 0, first.out
        assert first.recap()["changed"] == 4  # directory, file, template, download
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

        again = _run(tmp_path, plays, strategy)
        assert again.rc == 0, again.out
        assert again.recap()["changed"] == 0, again.out

        # Check mode with a diff: a change is predicted and shown, nothing written.
        (out / "settings").write_text("num_ctx 2048\n")
        check = _run(tmp_path, plays, strategy, "--check", "--diff")
        assert check.rc == 0, check.out
        assert "+num_ctx 4096" in check.out and "-num_ctx 2048" in check.out
        assert (out / "settings").read_text() == "num_ctx 2048\n"
