"""Filters for the fleet_swarm role (plugins/module_utils/fleet_swarm.py).

{{ blobs | localllm.fleet.fleet_swarm_plan(sizes, threshold, enabled) }}
{{ hosts | localllm.fleet.fleet_swarm_peers(wanted, sha256, seeder) }}
{{ address | localllm.fleet.fleet_swarm_tracker_url(port) }}
{{ 'fetch' | localllm.fleet.fleet_swarm_aria2_args(torrent, dir, settings, web_seed) }}
{{ slurped.content | localllm.fleet.fleet_swarm_info_hash }}   (base64, as slurp returns it)
{{ pull | localllm.fleet.fleet_swarm_registry_manifest_url(insecure) }}
{{ items | localllm.fleet.fleet_swarm_registry_blobs(manifests, store, limit, owner=u, group=g) }}
"""

from __future__ import annotations

import base64
import binascii

from ansible_collections.localllm.fleet.plugins.module_utils import fleet_swarm
from ansible_collections.localllm.fleet.plugins.plugin_utils.filter_errors import as_filter


def _info_hash_b64(content: str) -> str:
    try:
        data = base64.b64decode(content, validate=True)
    except (binascii.Error, ValueError, TypeError):
        raise fleet_swarm.SwarmError(
            "torrent: the content is not base64 (pass slurp's content)"
        ) from None
    return fleet_swarm.info_hash(data)


class FilterModule:
    """Fan-out filters."""

    def filters(self):
        return {
            "fleet_swarm_check": as_filter(fleet_swarm.check, fleet_swarm.SwarmError),
            "fleet_swarm_plan": as_filter(fleet_swarm.plan, fleet_swarm.SwarmError),
            "fleet_swarm_peers": as_filter(fleet_swarm.swarm_peers, fleet_swarm.SwarmError),
            "fleet_swarm_address": as_filter(fleet_swarm.fleet_address, fleet_swarm.SwarmError),
            "fleet_swarm_tracker_url": as_filter(fleet_swarm.tracker_url, fleet_swarm.SwarmError),
            "fleet_swarm_aria2_args": as_filter(fleet_swarm.aria2_args, fleet_swarm.SwarmError),
            "fleet_swarm_info_hash": as_filter(_info_hash_b64, fleet_swarm.SwarmError),
            "fleet_swarm_registry_manifest_url": as_filter(
                fleet_swarm.registry_manifest_url, fleet_swarm.SwarmError
            ),
            "fleet_swarm_registry_blobs": as_filter(
                fleet_swarm.registry_blobs, fleet_swarm.SwarmError
            ),
        }
