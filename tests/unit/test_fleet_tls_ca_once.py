"""fleet_tls makes or reads, and checks, the fleet CA once per run: site.yml applies the role
in up to three plays, and every host of a later play, also one new to the run, reads the CA
certificate noted on the control node (roles/fleet_tls/tasks/main.yml, vars/main.yml)."""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.controller  # community.crypto on the control node

REPO = Path(__file__).resolve().parents[2]
PASSPHRASE = "0123456789abcdef0123"


def _run(tmp_path: Path, plays: list[dict], *options: str) -> subprocess.CompletedProcess:
    inventory = tmp_path / "inventory.ini"
    inventory.write_text(
        "[fleet]\na\nb\nc\n[fleet:vars]\nansible_connection=local\n"
        f"ansible_python_interpreter={sys.executable}\n"
    )
    playbook = tmp_path / "play.yml"
    playbook.write_text(json.dumps(plays))
    return subprocess.run(
        [
            str(REPO / ".venv" / "bin" / "ansible-playbook"),
            "-i",
            str(inventory),
            str(playbook),
            *options,
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=180,
        env={
            **os.environ,
            "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"),
            "ANSIBLE_CACHE_PLUGIN": "ansible.builtin.memory",
            "ANSIBLE_LOCAL_TEMP": str(tmp_path / "ansible-local"),
            "ANSIBLE_NOCOLOR": "1",
        },
    )


def _play(hosts: str, ca_dir: Path, tasks: list[dict] | None = None) -> dict:
    return {
        "hosts": hosts,
        "gather_facts": False,
        "vars": {
            "fleet_tls_ca_dir": str(ca_dir),
            "fleet_tls_ca_passphrase": PASSPHRASE,
            # Only the CA part here: the hosts' own keys and certificates need a real host.
            "__fleet_tls_host_state": {"settled": True},
        },
        "roles": ["localllm.fleet.fleet_tls"],
        "tasks": tasks or [],
    }


def _task_runs(out: str, name: str) -> int:
    return len(re.findall(rf"^TASK \[localllm\.fleet\.fleet_tls : {re.escape(name)}", out, re.M))


def test_the_ca_is_settled_once_and_hosts_new_to_a_later_play_get_it(tmp_path):
    ca_dir = tmp_path / "pki"
    show = [{"ansible.builtin.debug": {"msg": "ca={{ __fleet_tls_ca_pem | hash('sha256') }}"}}]
    ran = _run(tmp_path, [_play("a,b", ca_dir), _play("b,c", ca_dir, show), _play("c", ca_dir)])
    assert ran.returncode == 0, ran.stdout + ran.stderr
    out = ran.stdout
    # made and checked in the first play only
    for name in ("Check the CA settings", "Make the CA's private key", "Read the CA certificate"):
        assert _task_runs(out, name) == 1, name
    # b and c (c was not in the first play) hold the CA certificate on disk
    expected = hashlib.sha256((ca_dir / "ca.crt").read_text().strip().encode())
    seen = re.findall(r"ok: \[(\w)\] =>\s*\n\s*msg: ca=(\w+)", out)
    assert sorted(host for host, _ in seen) == ["b", "c"]
    assert {digest for _, digest in seen} == {expected.hexdigest()}
    # the later plays skip the CA's include for every host, c (new to the run) included
    assert len(re.findall(r"The fleet CA\] \*+\nskipping: \[\w\]", out)) == 2


def test_a_ca_that_fails_its_check_stops_the_first_play(tmp_path):
    # The once-per-run note is written only after the checks pass: a CA that fails them (here it
    # expires within the margin asked for) stops the run where it is read.
    ca_dir = tmp_path / "pki"
    assert _run(tmp_path, [_play("a", ca_dir)]).returncode == 0
    strict = _play("a,b", ca_dir)
    strict["vars"]["fleet_tls_ca_min_remaining_days"] = 40000
    ran = _run(tmp_path, [strict])
    assert ran.returncode != 0
    assert "within fleet_tls_ca_min_remaining_days (40000)" in ran.stdout
    assert "Note the checked CA certificate" not in ran.stdout
