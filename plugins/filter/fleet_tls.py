"""Filters for fleet certificates and addresses (module_utils/fleet_tls.py).

{{ [inventory_hostname, fleet_host_address] | localllm.fleet.fleet_tls_sans(extra, host) }}
{{ groups['gateway'] | localllm.fleet.fleet_member_addresses(hostvars) }}
"""

from __future__ import annotations

from ansible_collections.localllm.fleet.plugins.module_utils import fleet_tls
from ansible_collections.localllm.fleet.plugins.plugin_utils.filter_errors import as_filter

fleet_tls_sans = as_filter(fleet_tls.subject_alt_names, fleet_tls.TlsNameError)


def fleet_member_addresses(names, hostvars):
    """How fleet members reach each named host (fleet_host_address, ansible_host, name)."""
    return [fleet_tls.member_address(name, hostvars[name]) for name in names or []]


class FilterModule:
    """Certificate and address filters."""

    def filters(self):
        return {"fleet_tls_sans": fleet_tls_sans, "fleet_member_addresses": fleet_member_addresses}
