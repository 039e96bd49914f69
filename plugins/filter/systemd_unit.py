"""Filters that write typed values into systemd unit files (module_utils/systemd_unit.py).

{% for line in env | localllm.fleet.systemd_environment %}{{ line }}
{% endfor %}
"""

from __future__ import annotations

from ansible.errors import AnsibleFilterError

from ansible_collections.localllm.fleet.plugins.module_utils import systemd_unit


def systemd_environment(variables):
    """`Environment="K=V"` lines for every non-null variable, sorted by name."""
    try:
        return systemd_unit.environment_lines(dict(variables))
    except systemd_unit.UnitValueError as exc:
        raise AnsibleFilterError(str(exc)) from exc


class FilterModule:
    """systemd unit filters."""

    def filters(self):
        return {"systemd_environment": systemd_environment}
