"""fleet_exporters writes node_exporter's files and the collector's units in one looped step;
each handler (and each daemon reload) must still follow only its own files: a new collector
interval restarts the collector's timer, not node_exporter, and the other way round."""

from __future__ import annotations

import pytest
from role_testing import REPO, ansible_playbook

pytestmark = pytest.mark.controller  # ansible-playbook evaluates the role's variables


def _result(target: str, changed: bool) -> dict:
    return {"changed": changed, "item": {"for": target}}


@pytest.mark.parametrize(
    ("results", "node", "units"),
    [
        # a new collector interval: the timer's file only
        (
            [
                _result("node_exporter", False),
                _result("node_exporter", False),
                _result("collector", False),
                _result("collector", True),
            ],
            False,
            True,
        ),
        # node_exporter's options only
        (
            [
                _result("node_exporter", True),
                _result("node_exporter", False),
                _result("collector", False),
                _result("collector", False),
            ],
            True,
            False,
        ),
        # a fresh host: everything
        ([_result("node_exporter", True), _result("collector", True)], True, True),
        # nothing
        ([_result("node_exporter", False), _result("collector", False)], False, False),
        # the step did not run (tags)
        (None, False, False),
    ],
)
def test_each_restart_follows_its_own_files(tmp_path, results, node, units):
    play = {
        "hosts": "localhost",
        "gather_facts": False,
        "vars_files": [str(REPO / "roles" / "fleet_exporters" / "vars" / "main.yml")],
        "vars": {}
        if results is None
        else {"__fleet_exporters_unit_files": {"changed": True, "results": results}},
        "tasks": [
            {
                "name": "Show the decisions",
                "ansible.builtin.debug": {
                    "msg": "NODE={{ _fleet_exporters_node_files_changed }}"
                    " UNITS={{ _fleet_exporters_units_changed }}"
                },
            }
        ],
    }
    run = ansible_playbook(tmp_path, [play])
    assert run.rc == 0, run.out[-3000:]
    assert f"NODE={node} UNITS={units}" in run.out
