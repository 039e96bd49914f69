"""fleet_exporters writes node_exporter's files and the collector's units in one looped step;
each handler (and each daemon reload) must still follow only its own files: a new collector
interval restarts the collector's timer, not node_exporter, and the other way round."""

from __future__ import annotations

import pytest
import yaml
from role_testing import REPO, role_variable

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
    variables = {} if results is None else {"__fleet_exporters_unit_files": {"results": results}}
    decided = role_variable(tmp_path, "fleet_exporters", "_fleet_exporters_changed_for", variables)
    assert sorted(decided) == sorted(changed_for)
