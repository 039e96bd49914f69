"""Filters for the fleet_gateway role (plugins/module_utils/gateway_plan.py, gateway_keys.py;
the wheelhouse filters are in wheelhouse.py).

{{ hosts | localllm.fleet.fleet_gateway_plan(hostvars, unreachable, model_defaults, settings) }}
{{ plan | localllm.fleet.fleet_gateway_litellm_config(settings) }}
{{ clients | localllm.fleet.fleet_gateway_clients(plan, min_length) }}   (checked, keys left out)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ansible_collections.localllm.fleet.plugins.module_utils import gateway_keys, gateway_plan
from ansible_collections.localllm.fleet.plugins.plugin_utils.filter_errors import as_filter


class _HostVarsView(Mapping):
    """The few variables the plan reads from each host, read lazily from Ansible's hostvars
    (templating every variable of every host would be slow on a large fleet)."""

    _NAMES = (
        "ollama_models",
        "ollama_models_extra",
        "ollama_models_group_extra",
        "ollama_models_host_extra",
        "ollama_models_overrides",
        "ollama_models_smoke_results",
        "gpu_tier",
        "gpu_tier_reason",
        "fleet_host_address",
        "ansible_host",
        "ollama_edge_port",
        *gateway_plan.MODEL_SETTINGS.values(),
    )

    def __init__(self, hostvars: Any, host: str) -> None:
        self._vars = hostvars[host]
        self._cache: dict[str, Any] = {}

    def __getitem__(self, name: str) -> Any:
        if name not in self._NAMES:
            raise KeyError(name)
        if name not in self._cache:
            if name not in self._vars:
                raise KeyError(name)
            self._cache[name] = self._vars[name]
        return self._cache[name]

    def __contains__(self, name: object) -> bool:
        return name in self._NAMES and name in self._vars

    def __iter__(self):
        return (name for name in self._NAMES if name in self._vars)

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def get(self, name: str, default: Any = None) -> Any:
        try:
            return self[name]
        except KeyError:
            return default


def fleet_gateway_plan(
    hosts: list,
    hostvars: Any,
    unreachable: list | None = None,
    model_defaults: Mapping | None = None,
    settings: Mapping | None = None,
) -> dict:
    views = {host: _HostVarsView(hostvars, host) for host in hosts if host in hostvars}
    missing = [host for host in hosts if host not in hostvars]
    if missing:
        raise gateway_plan.GatewayPlanError(f"model hosts not in the inventory: {missing}")
    return gateway_plan.gateway_plan(
        list(hosts), views, list(unreachable or []), dict(model_defaults or {}), settings
    )


def fleet_gateway_clients(clients: Any, plan: Mapping, min_length: int = 32) -> list:
    """The clients checked against the plan, without their keys (safe to show)."""
    aliases = {m["name"]: m["target"] for m in plan.get("models", []) if m["alias"]}
    checked = gateway_keys.validate_clients(
        clients, plan["declared_names"], min_length, aliases, bool(plan.get("complete", True))
    )
    return [{key: value for key, value in c.items() if key != "key"} for c in checked]


class FilterModule:
    """Gateway planning filters."""

    def filters(self):
        errors = (gateway_plan.GatewayPlanError, gateway_plan.PlanError)
        return {
            "fleet_gateway_plan": as_filter(fleet_gateway_plan, errors),
            "fleet_gateway_litellm_config": as_filter(gateway_plan.litellm_config, errors),
            "fleet_gateway_clients": as_filter(
                fleet_gateway_clients, gateway_keys.GatewayKeysError
            ),
            "fleet_gateway_unknown_models": as_filter(
                gateway_keys.unknown_models, gateway_keys.GatewayKeysError
            ),
            "fleet_gateway_journal_excerpt": gateway_plan.journal_excerpt,
            "fleet_gateway_report": gateway_plan.report_section,
        }
