"""fleet_haproxy writes its unit's drop-in and the global configuration in one looped step;
the handler must still restart HAProxy (and reload systemd) only when the drop-in changed,
and reload it (seamless: streams in flight finish) when only the configuration did."""

from __future__ import annotations

import pytest
from role_testing import REPO, ansible_playbook

pytestmark = pytest.mark.controller  # ansible-playbook evaluates the role's variable


def _decided(tmp_path, files) -> str:
    play = {
        "hosts": "localhost",
        "gather_facts": False,
        "vars_files": [str(REPO / "roles" / "fleet_haproxy" / "vars" / "main.yml")],
        "vars": {} if files is None else {"__fleet_haproxy_files": files},
        "tasks": [
            {
                "name": "Show the decision",
                "ansible.builtin.debug": {
                    "msg": "DROPIN_CHANGED={{ _fleet_haproxy_dropin_changed }}"
                },
            }
        ],
    }
    run = ansible_playbook(tmp_path, [play])
    assert run.rc == 0, run.out[-3000:]
    return run.out


@pytest.mark.parametrize(
    ("files", "changed"),
    [
        # the drop-in (first item) changed: restart, with a daemon reload
        ({"changed": True, "results": [{"changed": True}, {"changed": False}]}, True),
        ({"changed": True, "results": [{"changed": True}, {"changed": True}]}, True),
        # only the global configuration changed: a reload
        ({"changed": True, "results": [{"changed": False}, {"changed": True}]}, False),
        ({"changed": False, "results": [{"changed": False}, {"changed": False}]}, False),
        # the step did not run (tags): nothing changed
        (None, False),
    ],
)
def test_only_a_changed_drop_in_restarts_haproxy(tmp_path, files, changed):
    assert f"DROPIN_CHANGED={changed}" in _decided(tmp_path, files)
