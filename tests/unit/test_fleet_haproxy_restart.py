"""fleet_haproxy writes its unit's drop-in and the global configuration in one looped step;
the handler must still restart HAProxy (and reload systemd) only when the drop-in changed,
and reload it (seamless: streams in flight finish) when only the configuration did."""

from __future__ import annotations

import pytest
import yaml
from role_testing import REPO, role_variable

pytestmark = pytest.mark.controller  # ansible-playbook evaluates the role's variable

ROLE = REPO / "roles" / "fleet_haproxy"
DROPIN = yaml.safe_load((ROLE / "vars" / "main.yml").read_text())["_fleet_haproxy_dropin"]
CONFIG = "/etc/haproxy/haproxy.cfg"


def _result(dest: str, changed: bool) -> dict:
    return {"changed": changed, "item": {"dest": dest}}


def test_the_looped_step_writes_the_drop_in_the_decision_looks_for():
    tasks = yaml.safe_load((ROLE / "tasks" / "main.yml").read_text())
    step = next(task for task in tasks if task.get("register") == "__fleet_haproxy_files")
    dests = [item["dest"] for item in step["loop"]]
    assert "{{ _fleet_haproxy_dropin }}" in dests
    assert len(dests) == 2  # the drop-in and the global configuration


@pytest.mark.parametrize(
    ("results", "changed"),
    [
        # the drop-in changed: restart, with a daemon reload (wherever it sits in the loop)
        ([_result(DROPIN, True), _result(CONFIG, False)], True),
        ([_result(CONFIG, False), _result(DROPIN, True)], True),
        # only the global configuration changed: a reload
        ([_result(DROPIN, False), _result(CONFIG, True)], False),
        ([_result(DROPIN, False), _result(CONFIG, False)], False),
        # the step did not run (tags): nothing changed
        (None, False),
    ],
)
def test_only_a_changed_drop_in_restarts_haproxy(tmp_path, results, changed):
    variables = {} if results is None else {"__fleet_haproxy_files": {"results": results}}
    decided = role_variable(tmp_path, "fleet_haproxy", "_fleet_haproxy_dropin_changed", variables)
    assert decided is changed
