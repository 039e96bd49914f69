"""Filters that write typed values into systemd unit files (module_utils/systemd_unit.py).

{% for line in env | localllm.fleet.systemd_environment %}{{ line }}
{% endfor %}
"""

from __future__ import annotations

from ansible_collections.localllm.fleet.plugins.module_utils import systemd_unit
from ansible_collections.localllm.fleet.plugins.plugin_utils.filter_errors import as_filter


def _environment(variables):
    """`Environment="K=V"` lines for every non-null variable, sorted by name."""
    return systemd_unit.environment_lines(dict(variables))


systemd_environment = as_filter(_environment, systemd_unit.UnitValueError)


class FilterModule:
    """systemd unit filters."""

    def filters(self):
        return {"systemd_environment": systemd_environment}
