"""Filters for the firewall plan (module_utils/fleet_firewall.py).

{{ openings | localllm.fleet.fleet_firewall_plan(ssh_port, ssh_sources, private_ports) }}
"""

from __future__ import annotations

from ansible_collections.localllm.fleet.plugins.module_utils import fleet_firewall
from ansible_collections.localllm.fleet.plugins.plugin_utils.filter_errors import as_filter

fleet_firewall_plan = as_filter(fleet_firewall.plan, fleet_firewall.FirewallError)


class FilterModule:
    """Firewall filters."""

    def filters(self):
        return {"fleet_firewall_plan": fleet_firewall_plan}
