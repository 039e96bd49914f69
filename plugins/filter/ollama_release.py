"""Filters over Ollama release facts (plugins/module_utils/ollama_release.py).

{{ ansible_facts['architecture'] | localllm.fleet.ollama_artifact_name('', 'tar.zst') }}
{{ sums.content | localllm.fleet.ollama_release_checksum('ollama-linux-amd64.tar.zst') }}
"""

from __future__ import annotations

from ansible.errors import AnsibleFilterError

from ansible_collections.localllm.fleet.plugins.module_utils import ollama_release as release


def _wrap(function):
    def filter_function(*args, **kwargs):
        try:
            return function(*args, **kwargs)
        except release.ReleaseError as exc:
            raise AnsibleFilterError(str(exc)) from exc

    filter_function.__name__ = function.__name__
    filter_function.__doc__ = function.__doc__
    return filter_function


class FilterModule:
    """Ollama release filters."""

    def filters(self):
        return {
            "ollama_version": _wrap(release.normalize_version),
            "ollama_artifact_format": _wrap(release.artifact_format),
            "ollama_artifact_name": _wrap(release.artifact_name),
            "ollama_release_url": _wrap(release.release_url),
            "ollama_release_checksum": _wrap(release.checksum_for),
            "ollama_sha256": _wrap(release.valid_sha256),
            "ollama_client_version": _wrap(release.client_version),
            "ollama_api_base": _wrap(release.api_base),
        }
