"""Filters over Ollama release facts (plugins/module_utils/ollama_release.py).

{{ ansible_facts['architecture'] | localllm.fleet.ollama_artifact_name('', 'tar.zst') }}
{{ sums.content | localllm.fleet.ollama_release_checksum('ollama-linux-amd64.tar.zst') }}
{{ ollama_version | localllm.fleet.ollama_driver_floor(['hopper']) }}   -> 550
"""

from __future__ import annotations

from ansible_collections.localllm.fleet.plugins.module_utils import ollama_release as release
from ansible_collections.localllm.fleet.plugins.plugin_utils.filter_errors import as_filter


class FilterModule:
    """Ollama release filters."""

    def filters(self):
        return {
            "ollama_version": as_filter(release.normalize_version, release.ReleaseError),
            "ollama_artifact_format": as_filter(release.artifact_format, release.ReleaseError),
            "ollama_artifact_name": as_filter(release.artifact_name, release.ReleaseError),
            "ollama_release_url": as_filter(release.release_url, release.ReleaseError),
            "ollama_release_checksum": as_filter(release.checksum_for, release.ReleaseError),
            "ollama_sha256": as_filter(release.valid_sha256, release.ReleaseError),
            "ollama_client_version": as_filter(release.client_version, release.ReleaseError),
            "ollama_api_base": as_filter(release.api_base, release.ReleaseError),
            "ollama_driver_floor": as_filter(release.host_driver_floor, release.ReleaseError),
            "ollama_version_or_pinned": as_filter(release.version_or_pinned, release.ReleaseError),
        }
