"""Ollama on another port: the inventory says so once, with the ollama role's `ollama_host`,
and the models, the smoke test, the preload unit and the report follow. The stand-in Ollama
listens on an ephemeral loopback port (never 11434); the ollama_models role's tasks and
playbooks/report.yml run against it through ansible-playbook on localhost."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "standins" / "ollama"))

from role_testing import run_role_tasks
from standin_testing import Ollama

pytest_plugins = ["standin_fixtures"]
pytestmark = pytest.mark.controller  # ansible-playbook runs the role and the report

REPO = Path(__file__).resolve().parents[2]
MODEL = {
    "name": "deepseek-r1:1.5b",
    "family": "deepseek-r1",
    "parameter_size": "1.5b",
    "size_mib": 1064,
    "num_ctx": 4096,
}
TARGET = "fleet/deepseek-r1:1.5b"

# The models play as models.yml and smoke.yml run it, minus what needs root on the machine
# running the tests (the Modelfile directory, the preload unit's systemd calls): the model is
# registered by the module register.yml calls, with the address the role derived; the preload
# unit is rendered into the test's directory.
MODELS_PLAY = """
- name: Models on the host's Ollama
  hosts: all
  gather_facts: false
  tasks:
    - name: Plan (public, so the role's derived address is visible below)
      ansible.builtin.include_role:
        name: localllm.fleet.ollama_models
        tasks_from: plan.yml
        public: true

    - name: Register each model as register.yml does
      localllm.fleet.ollama_model:
        name: "{{ item.target }}"
        modelfile: "{{ __ollama_models_rendered[item.target] }}"
        api_url: "{{ ollama_models_api_url }}"
        models_dir: "{{ ollama_models_store }}"
      loop: "{{ __ollama_models_plan }}"

    - name: Render the preload unit
      ansible.builtin.template:
        src: "{{ role_path }}/templates/etc/systemd/system/ollama-preload.service.j2"
        dest: "{{ out }}/ollama-preload.service"
        mode: "0644"
      vars:
        role_path: "{{ repo }}/roles/ollama_models"  # as inside the role

    - name: Smoke-test the models
      ansible.builtin.include_role:
        name: localllm.fleet.ollama_models
        tasks_from: smoke.yml

- name: Report
  ansible.builtin.import_playbook: "{{ repo }}/playbooks/report.yml"
"""


def test_models_smoke_and_report_follow_ollama_host_to_another_port(
    server: Ollama, tiny_gguf: Path, tmp_path: Path
) -> None:
    port = int(server.host.rsplit(":", 1)[1])
    assert port != 11434
    base = tiny_gguf.parent / "Modelfile"
    base.write_text(f"FROM ./{tiny_gguf.name}\n")
    created = server.run("create", MODEL["name"], "-f", str(base))
    assert created.code == 0, created.stderr

    out = tmp_path / "out"
    out.mkdir()
    store = tmp_path / "store"
    host = {
        "ansible_connection": "local",
        "ansible_python_interpreter": sys.executable,
        # The only mention of the port: the ollama role's listen address.
        "ollama_host": server.host,
        # ... and of the store, under the ollama role's old name (still honoured).
        "ollama_models_dir": str(store),
        "ollama_models": [MODEL],
        "gpu_probe_status": "cpu",
        "ollama_models_smoke_reasoning": False,
        # Nothing runs the preload unit here: the smoke test must not expect the model kept.
        "ollama_models_preload": False,
    }
    inventory = tmp_path / "hosts.json"
    inventory.write_text(json.dumps({"all": {"hosts": {"h1": host}}}))
    playbook = tmp_path / "play.yml"
    playbook.write_text(MODELS_PLAY)
    extra = {"repo": str(REPO), "out": str(out), "report_dir": str(out)}
    command = [str(REPO / ".venv" / "bin" / "ansible-playbook"), "-i", str(inventory)]
    run = subprocess.run(
        [*command, str(playbook), "-e", json.dumps(extra)],
        capture_output=True,
        text=True,
        env={
            **os.environ,
            "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"),
            "ANSIBLE_NOCOLOR": "1",
            "ANSIBLE_LOCAL_TEMP": str(tmp_path / "ansible-local"),
        },
        timeout=300,
        check=False,
    )
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]

    # Registered on the server behind the non-default port.
    tags = json.loads(server.request("GET", "/api/tags")[2])
    assert TARGET in [m["name"] for m in tags["models"]]
    # Smoke-tested there: it answered (the role's assert passed; its line names the model).
    assert f"{TARGET}: answered" in run.stdout
    # The preload unit's CLI talks to the same address, as the service user.
    unit = (out / "ollama-preload.service").read_text()
    assert f'Environment="OLLAMA_HOST=http://127.0.0.1:{port}"\n' in unit
    assert "User=ollama\nGroup=ollama\n" in unit
    # The report read the version and the model from it.
    markdown = (out / "fleet-report.md").read_text()
    row = next(line for line in markdown.splitlines() if line.startswith("| h1 "))
    assert "0.32.15" in row and TARGET in row, markdown


SHOW = {
    "name": "Show the derived values",
    "ansible.builtin.debug": {
        "msg": "api={{ ollama_models_api_url }} store={{ ollama_models_store }} "
        "owner={{ _ollama_models_user }}:{{ _ollama_models_group }} cli={{ _ollama_models_cli }}"
    },
    # As inside the role (both read the ollama role's defaults beside them).
    "vars": {"role_path": str(REPO / "roles" / "ollama_models")},
}


@pytest.mark.parametrize(
    ("inventory", "expected"),
    [
        (
            {},
            "api=http://127.0.0.1:11434 store=/usr/share/ollama/.ollama/models owner=ollama:ollama "
            "cli=/usr/local/bin/ollama",
        ),
        (
            {
                "ollama_host": "0.0.0.0:11500",
                "ollama_store_dir": "/srv/models",
                "ollama_user": "llm",
                "ollama_group": "llm",
                "ollama_bin_link": "/usr/bin/ollama",
            },
            "api=http://127.0.0.1:11500 store=/srv/models owner=llm:llm cli=/usr/bin/ollama",
        ),
        # The store's deprecated old name still moves the models role's store.
        ({"ollama_models_dir": "/srv/old"}, "store=/srv/old "),
    ],
)
def test_the_shared_facts_come_from_the_ollama_role(
    tmp_path: Path, inventory: dict[str, str], expected: str
) -> None:
    """What the ollama_models role uses for the endpoint, store, owner and CLI:
    the inventory's ollama_* variables when set, else the ollama role's defaults."""
    run = run_role_tasks(
        tmp_path,
        "ollama_models",
        "plan.yml",
        {"ollama_models": [], **inventory},
        after=[SHOW],
        public=True,
    )
    assert not run.failed, run.out
    assert expected in " ".join(run.out.split())


def test_the_modules_defaults_are_the_ollama_role_s() -> None:
    """The modules cannot read a role's defaults: their documented defaults (the API address,
    ollama_bundle's store) are kept equal to the ollama role's."""
    from ansible_collections.localllm.fleet.plugins.modules import ollama_bundle

    ollama_defaults = yaml.safe_load((REPO / "roles/ollama/defaults/main.yml").read_text())
    bundle_doc = yaml.safe_load(ollama_bundle.DOCUMENTATION)
    assert bundle_doc["options"]["models_dir"]["default"] == ollama_defaults["ollama_store_dir"]
    from ansible_collections.localllm.fleet.plugins.doc_fragments.ollama_api import (
        ModuleDocFragment,
    )
    from ansible_collections.localllm.fleet.plugins.module_utils.ollama_api import DEFAULT_API_URL
    from ansible_collections.localllm.fleet.plugins.module_utils.ollama_release import api_base

    ollama = yaml.safe_load((REPO / "roles/ollama/defaults/main.yml").read_text())
    assert api_base(ollama["ollama_host"]) == DEFAULT_API_URL
    fragment = yaml.safe_load(ModuleDocFragment.DOCUMENTATION)
    assert fragment["options"]["api_url"]["default"] == DEFAULT_API_URL
