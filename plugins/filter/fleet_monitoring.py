"""Filters for the monitoring roles (module_utils/fleet_monitoring.py).

{{ groups | localllm.fleet.fleet_monitored_hosts }}
{{ groups | localllm.fleet.fleet_model_hosts }}
{{ groups | localllm.fleet.fleet_scrape_configs(hostvars, settings) }}
{{ ollama_models | localllm.fleet.fleet_expected_models(namespace) }}
{{ ollama_models_smoke_results | localllm.fleet.fleet_smoke_record(now(utc=true).timestamp()) }}
{{ ollama_models_smoke_results | localllm.fleet.fleet_smoke_stamp(digest, timestamp) }}
{{ stamp_text | localllm.fleet.fleet_smoke_stamp_digest }}
"""

from __future__ import annotations

from ansible_collections.localllm.fleet.plugins.module_utils import fleet_monitoring, fleet_tls
from ansible_collections.localllm.fleet.plugins.plugin_utils.filter_errors import as_filter


def fleet_scrape_configs(groups, hostvars, settings):
    """Prometheus scrape jobs for every monitored host, reached at its fleet address."""
    names = fleet_monitoring.monitored_hosts(groups)
    addresses = {name: fleet_tls.member_address(name, hostvars[name]) for name in names}
    targets = fleet_monitoring.scrape_targets(groups, addresses)
    return fleet_monitoring.scrape_configs(targets, settings)


class FilterModule:
    """Monitoring filters."""

    def filters(self):
        errors = (fleet_monitoring.MonitoringError, fleet_tls.TlsNameError)
        return {
            "fleet_monitored_hosts": as_filter(fleet_monitoring.monitored_hosts, errors),
            "fleet_model_hosts": as_filter(fleet_monitoring.model_hosts, errors),
            "fleet_scrape_configs": as_filter(fleet_scrape_configs, errors),
            "fleet_expected_models": as_filter(fleet_monitoring.expected_models, errors),
            "fleet_smoke_record": as_filter(fleet_monitoring.smoke_record, errors),
            "fleet_smoke_stamp": as_filter(fleet_monitoring.smoke_stamp, errors),
            "fleet_smoke_stamp_digest": as_filter(fleet_monitoring.smoke_stamp_digest, errors),
        }
