"""Filters over a hash-locked wheelhouse (plugins/module_utils/wheelhouse.py), for every role
that installs Python packages offline from one (fleet_gateway: LiteLLM; fleet_pull:
ansible-core).

{{ lookup('file', lock) | localllm.fleet.wheelhouse_info }}     version, id, tarball, python
{{ sums_text | localllm.fleet.wheelhouse_checksum(tarball) }}   the tarball's sha256 from a
                                                                 sha256sum-format file
"""

from __future__ import annotations

from ansible_collections.localllm.fleet.plugins.module_utils import wheelhouse
from ansible_collections.localllm.fleet.plugins.plugin_utils.filter_errors import as_filter


class FilterModule:
    """Wheelhouse filters."""

    def filters(self):
        return {
            "wheelhouse_info": as_filter(wheelhouse.wheelhouse_info, wheelhouse.WheelhouseError),
            "wheelhouse_checksum": as_filter(wheelhouse.checksum_for, wheelhouse.WheelhouseError),
        }
