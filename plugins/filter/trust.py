"""Filters over what the roles trust and show (plugins/module_utils/trust.py).

{{ url | localllm.fleet.url_redacted }}
{{ [{'what': 'ollama_download_base_url', 'url': url, 'pinned': false}]
   | localllm.fleet.unverified_http_sources }}
{{ __ollama_models_plan | localllm.fleet.unverified_model_sources }}
"""

from __future__ import annotations

from ansible_collections.localllm.fleet.plugins.module_utils import trust


class FilterModule:
    """Trust filters."""

    def filters(self):
        return {
            "url_redacted": trust.redact_url,
            "unverified_http_sources": trust.unverified_http_sources,
            "unverified_model_sources": trust.unverified_model_sources,
        }
