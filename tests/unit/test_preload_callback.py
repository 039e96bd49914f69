"""The preload callback (plugins/callback/preload.py): the collection's filter files, and
every installed collection's package, are loaded in the main process at playbook start, so
that the workers Ansible forks inherit them; and the project's ansible.cfg enables it."""

from __future__ import annotations

import configparser
import os
import subprocess
import sys
from pathlib import Path

import pytest
from role_testing import ansible_playbook

pytestmark = pytest.mark.controller  # ansible-core's plugin loader

REPO = Path(__file__).resolve().parents[2]
FILTER_DIR = REPO / "plugins" / "filter"


def _fresh_python(code: str) -> subprocess.CompletedProcess:
    """`code` in a new interpreter with the project's ansible.cfg; argv[1] is the collections
    path. Fails the test when it does not exit 0."""
    ran = subprocess.run(
        [sys.executable, "-c", code, str(REPO / "collections")],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "ANSIBLE_CONFIG": str(REPO / "ansible.cfg")},
        cwd=REPO,
    )
    assert ran.returncode == 0, ran.stderr
    return ran


def test_starting_a_playbook_loads_every_filter_file_of_the_collection():
    # A fresh interpreter: nothing of the collection's filters is loaded before the callback.
    code = """
import sys
from ansible.plugins.loader import init_plugin_loader
init_plugin_loader([sys.argv[1]])
from ansible.plugins.loader import filter_loader
before = {p for p in filter_loader._module_cache if '/localllm/fleet/plugins/filter/' in p}
from ansible_collections.localllm.fleet.plugins.callback import preload
preload.CallbackModule().v2_playbook_on_start(None)
after = {p for p in filter_loader._module_cache if '/localllm/fleet/plugins/filter/' in p}
print(len(before))
for p in sorted(after): print(p.rsplit('/', 1)[1])
"""
    ran = _fresh_python(code)
    before, *loaded = ran.stdout.split()
    assert before == "0"
    assert sorted(loaded) == sorted(p.name for p in FILTER_DIR.glob("*.py"))


def test_starting_a_playbook_imports_every_installed_collection_s_package():
    # What Mitogen's planner lists in each worker that runs a collection's module: after the
    # callback, each of those packages (and its parsed meta/runtime.yml) is already imported.
    code = """
import sys
from ansible.plugins.loader import init_plugin_loader
init_plugin_loader([sys.argv[1]])
from ansible.collections.list import list_collection_dirs
dirs = [p.decode().split('/')[-2:] for p in list_collection_dirs()]
names = sorted('ansible_collections.' + '.'.join(d) for d in dirs)
for name in names:
    del sys.modules[name]
before = [n for n in names if n in sys.modules]
from ansible_collections.localllm.fleet.plugins.callback import preload
preload.CallbackModule().v2_playbook_on_start(None)
after = [n for n in names if n in sys.modules and hasattr(sys.modules[n], '_collection_meta')]
print(len(before), len(names), len(after))
print(' '.join(names))
"""
    ran = _fresh_python(code)
    counts, names = ran.stdout.splitlines()
    before, listed, after = map(int, counts.split())
    assert before == 0
    assert after == listed
    # the collections the roles' modules come from are among them
    assert {"ansible_collections.community.crypto", "ansible_collections.localllm.fleet"} <= set(
        names.split()
    )


def test_the_project_s_ansible_cfg_enables_it():
    config = configparser.ConfigParser()
    config.read(REPO / "ansible.cfg")
    enabled = [name.strip() for name in config["defaults"]["callbacks_enabled"].split(",")]
    assert "localllm.fleet.preload" in enabled


def test_a_playbook_runs_with_it_and_its_output_is_unchanged(tmp_path):
    play = {
        "hosts": "localhost",
        "gather_facts": False,
        "tasks": [
            {"ansible.builtin.debug": {"msg": "{{ '0.32.15' | localllm.fleet.ollama_version }}"}}
        ],
    }
    ran = ansible_playbook(tmp_path, [play])
    assert ran.rc == 0, ran.out
    assert "msg: 0.32.15" in ran.out  # callback_result_format = yaml
    assert "preload" not in ran.out
