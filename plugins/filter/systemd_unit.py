"""Filters that write typed values into systemd unit files (module_utils/systemd_unit.py).

{% for line in env | localllm.fleet.systemd_environment %}{{ line }}
{% endfor %}
ReadWritePaths={{ ollama_home | localllm.fleet.systemd_path('ollama_home') }}
User={{ ollama_user | localllm.fleet.systemd_name('ollama_user') }}
{{ {'paths': {...}, 'names': {...}, 'environment': {...}} | localllm.fleet.systemd_unit_problems }}
"""

from __future__ import annotations

from ansible_collections.localllm.fleet.plugins.module_utils import systemd_unit
from ansible_collections.localllm.fleet.plugins.plugin_utils.filter_errors import as_filter


def _environment(variables):
    """`Environment="K=V"` lines for every non-null variable, sorted by name."""
    return systemd_unit.environment_lines(dict(variables))


def _problems(settings):
    """`<variable>: <reason>` for every path, name and environment value a unit cannot hold."""
    settings = dict(settings or {})
    return systemd_unit.problems(
        paths=settings.get("paths"),
        names=settings.get("names"),
        environment=settings.get("environment"),
    )


systemd_environment = as_filter(_environment, systemd_unit.UnitValueError)


class FilterModule:
    """systemd unit filters."""

    def filters(self):
        return {
            "systemd_environment": systemd_environment,
            "systemd_path": as_filter(systemd_unit.unit_path, systemd_unit.UnitValueError),
            "systemd_name": as_filter(systemd_unit.unit_name, systemd_unit.UnitValueError),
            "systemd_unit_problems": _problems,
        }
