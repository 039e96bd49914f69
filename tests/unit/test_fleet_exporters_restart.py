"""fleet_exporters writes node_exporter's files and the collector's units in one looped step;
each handler (and each daemon reload) must still follow only its own files: a new collector
interval restarts the collector's timer, not node_exporter, and the other way round."""

from __future__ import annotations

import pytest
import yaml
from role_testing import REPO, ansible_playbook

pytestmark = pytest.mark.controller  # ansible-playbook evaluates the role's variables

ROLE = REPO / "roles" / "fleet_exporters"


def _result(target: str, changed: bool) -> dict:
    return {"changed": changed, "item": {"for": target}}


def test_every_file_of_the_looped_step_names_whose_it_is():
    tasks = yaml.safe_load((ROLE / "tasks" / "node_exporter.yml").read_text())
    step = next(task for task in tasks if task.get("register") == "__fleet_exporters_unit_files")
    owners = [item.get("for") for item in step["loop"]]
    assert owners.count("node_exporter") == 2 and owners.count("collector") == 2, owners


@pytest.mark.parametrize(
    ("results", "changed_for"),
    [
        # a new collector interval: the timer's file only
        (
            [
                _result("node_exporter", False),
                _result("node_exporter", False),
                _result("collector", False),
                _result("collector", True),
            ],
            ["collector"],
        ),
        # node_exporter's options only
        (
            [
                _result("node_exporter", True),
                _result("node_exporter", False),
                _result("collector", False),
                _result("collector", False),
            ],
            ["node_exporter"],
        ),
        # a fresh host: everything
        (
            [
                _result("node_exporter", True),
                _result("node_exporter", True),
                _result("collector", True),
                _result("collector", True),
            ],
            ["node_exporter", "collector"],
        ),
        # nothing
        ([_result("node_exporter", False), _result("collector", False)], []),
        # the step did not run (tags)
        (None, []),
    ],
)
def test_each_restart_follows_its_own_files(tmp_path, results, changed_for):
    play = {
        "hosts": "localhost",
        "gather_facts": False,
        "vars_files": [str(ROLE / "vars" / "main.yml")],
        "vars": {}
        if results is None
        else {"__fleet_exporters_unit_files": {"changed": True, "results": results}},
        "tasks": [
            {
                "name": "Show the decisions",
                "ansible.builtin.debug": {
                    "msg": "CHANGED_FOR={{ _fleet_exporters_changed_for | to_json }}"
                },
            }
        ],
    }
    run = ansible_playbook(tmp_path, [play])
    assert run.rc == 0, run.out[-3000:]
    line = next(line for line in run.out.splitlines() if "CHANGED_FOR=" in line)
    assert sorted(yaml.safe_load(line.split("CHANGED_FOR=", 1)[1].strip().strip("'"))) == sorted(
        changed_for
    ), line
