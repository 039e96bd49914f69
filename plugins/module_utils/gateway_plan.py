# Copyright (c) localllm.fleet contributors
# Apache License 2.0 (see galaxy.yml)
"""What the gateway serves, from the model hosts' variables (pure functions).

The fleet_gateway role hands over, for every model host, the variables the ollama_models
role plans from (`ollama_models`, the extras, overrides and settings) plus its address, edge
port, tier and smoke results. Here they become:

- the public model names: every registered model a host serves (`fleet/deepseek-r1:32b`)
  and friendly aliases (`deepseek-r1` -> the largest size of that model served);
- one HAProxy pool per registered model on the gateway's loopback, whose servers are the
  edges of the hosts serving it;
- the fallback chain across models (by default each size falls back to the smaller sizes of
  the same model, largest first), which operators override;
- the hosts (or host models) left out, each with its reason;
- LiteLLM's configuration: one `ollama_chat/` deployment per public name, pointing at the
  pool of the model it names.

What a host registers is computed by models_plan.plan_models, exactly as the ollama_models
role computes it: names are never re-derived here.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from ansible_collections.localllm.fleet.plugins.module_utils.models_plan import (
    PlanError,
    plan_models,
)

# The port every edge listens on unless the host says otherwise (the ollama_edge contract).
DEFAULT_EDGE_PORT = 11443
_SIZE = re.compile(r"^(?P<value>\d+(?:\.\d+)?)(?P<unit>[bmBM])(?:$|[-_])")
_POOL_CHARS = re.compile(r"[^A-Za-z0-9_.-]")
_SERVER_CHARS = re.compile(r"[^A-Za-z0-9_.-]")
# The ollama_models role's settings that decide registered names, with the variable each
# comes from (roles/ollama_models/vars/main.yml builds the same mapping).
MODEL_SETTINGS = {
    "source": "ollama_models_source",
    "namespace": "ollama_models_namespace",
    "parameters": "ollama_models_parameters",
    "registry": "ollama_models_registry",
    "registry_namespace": "ollama_models_registry_namespace",
    "insecure": "ollama_models_registry_insecure",
    "gguf_base_url": "ollama_models_gguf_base_url",
    "gguf_filename": "ollama_models_gguf_filename",
    "cache_dir": "ollama_models_cache_dir",
}
_EXTRA_LAYERS = ("ollama_models_extra", "ollama_models_group_extra", "ollama_models_host_extra")


class GatewayPlanError(ValueError):
    """An input the operator must fix, said so that they can."""


def parameter_size(tag: str) -> float | None:
    """Billions of parameters a tag names (`671b` -> 671, `1.5b`, `270m` -> 0.27), or None."""
    match = _SIZE.match(str(tag))
    if not match:
        return None
    value = float(match["value"])
    return value / 1000 if match["unit"].lower() == "m" else value


def split_target(target: str) -> tuple[str, str, str]:
    """`fleet/deepseek-r1:32b` -> (`fleet/deepseek-r1`, `deepseek-r1`, `32b`)."""
    repo, _, tag = str(target).rpartition(":")
    if not repo or "/" in tag:
        repo, tag = str(target), "latest"
    return repo, repo.rsplit("/", 1)[-1], tag


def _var(hostvars: Mapping, name: str, defaults: Mapping) -> Any:
    if name in hostvars:
        return hostvars[name]
    return defaults.get(name)


def host_models(hostvars: Mapping, model_defaults: Mapping) -> list[str]:
    """The names a host registers in Ollama (`fleet/<name>`), from the same inputs and the
    same code as the ollama_models role. `model_defaults` are that role's defaults."""
    declared = _var(hostvars, "ollama_models", model_defaults)
    extras: list = []
    for layer in _EXTRA_LAYERS:
        value = _var(hostvars, layer, model_defaults)
        if value is None:
            continue
        if not isinstance(value, list):
            raise PlanError(f"{layer} must be a list, not {type(value).__name__}")
        extras += value
    overrides = _var(hostvars, "ollama_models_overrides", model_defaults) or {}
    settings = {key: _var(hostvars, var, model_defaults) for key, var in MODEL_SETTINGS.items()}
    settings = {key: value for key, value in settings.items() if value is not None}
    return [item["target"] for item in plan_models(declared, extras, overrides, settings)]


def _exclusion(name: str, hostvars: Mapping, unreachable: set[str]) -> str | None:
    """Why a host serves nothing through the gateway, before looking at its models."""
    reason = hostvars.get("gpu_tier_reason") or "no reason recorded"
    if name in unreachable:
        return f"gpu_tier could not read it (gpu_unreachable): {reason}"
    if "gpu_tier" in hostvars and hostvars["gpu_tier"] is None:
        return f"no GPU tier: {reason}"
    if "ollama_models" in hostvars and hostvars["ollama_models"] is None:
        return f"no models declared (no tier): {reason}"
    return None


def _smoke_failures(hostvars: Mapping) -> dict[str, str]:
    """{registered name: why} for the models whose smoke test failed in this run."""
    results = hostvars.get("ollama_models_smoke_results")
    if not isinstance(results, list):
        return {}
    failed = {}
    for result in results:
        if not isinstance(result, Mapping) or not result.get("model"):
            continue
        problem = None
        if not result.get("ok"):
            problem = result.get("error") or "it failed"
        elif not result.get("content"):
            problem = "an empty answer"
        elif result.get("reasoning") and not result.get("thinking"):
            problem = "no thinking from a reasoning model"
        if problem:
            failed[str(result["model"])] = f"its smoke test failed: {problem}"
    return failed


def _server_name(name: str, used: set[str]) -> str:
    base = _SERVER_CHARS.sub("_", name) or "host"
    candidate, index = base, 2
    while candidate in used:
        candidate, index = f"{base}_{index}", index + 1
    used.add(candidate)
    return candidate


def _check_port(host: str, port: Any) -> int:
    try:
        number = int(port)
    except (TypeError, ValueError):
        number = 0
    if not 0 < number < 65536:
        raise GatewayPlanError(f"host {host}: ollama_edge_port {port!r} is not a TCP port")
    return number


def _size_key(target: str) -> tuple[float, str]:
    _, _, tag = split_target(target)
    size = parameter_size(tag)
    return (size if size is not None else -1.0, tag)


def default_aliases(targets: list[str]) -> dict[str, str]:
    """`deepseek-r1` -> the largest `*/deepseek-r1:<size>` served (by the size in its tag);
    a model whose tags name no size gets an alias only when one tag is served."""
    by_model: dict[str, list[str]] = {}
    for target in targets:
        by_model.setdefault(split_target(target)[1], []).append(target)
    aliases = {}
    for model, served in sorted(by_model.items()):
        sized = [t for t in served if parameter_size(split_target(t)[2]) is not None]
        if sized:
            aliases[model] = max(sized, key=_size_key)
        elif len(served) == 1:
            aliases[model] = served[0]
    return {alias: target for alias, target in aliases.items() if alias not in targets}


def default_fallbacks(targets: list[str]) -> dict[str, list[str]]:
    """Each size of a model falls back to the smaller sizes served of it, largest first."""
    by_model: dict[str, list[str]] = {}
    for target in targets:
        if parameter_size(split_target(target)[2]) is not None:
            by_model.setdefault(split_target(target)[1], []).append(target)
    chains = {}
    for served in by_model.values():
        ordered = sorted(served, key=_size_key, reverse=True)
        for index, target in enumerate(ordered[:-1]):
            chains[target] = ordered[index + 1 :]
    return chains


def gateway_plan(
    hosts: list[str],
    hostvars: Mapping,
    unreachable: list[str] | None = None,
    model_defaults: Mapping | None = None,
    settings: Mapping | None = None,
) -> dict[str, Any]:
    """The gateway's plan.

    `hosts`: the model hosts; `hostvars`: Ansible's hostvars (or {host: vars}); `unreachable`:
    the hosts of group gpu_unreachable; `model_defaults`: the ollama_models role's defaults;
    `settings`: aliases (bool: make the default ones), extra_aliases {alias: name},
    fallbacks_by_size (bool), fallbacks {name: [names]} (wins over the default chain; [] for
    none), pool_port (first loopback port of the pools), edge_port (default edge port).
    """
    settings = dict(settings or {})
    model_defaults = model_defaults or {}
    unreachable_set = set(unreachable or [])
    edge_default = settings.get("edge_port") or DEFAULT_EDGE_PORT
    excluded: list[dict[str, Any]] = []
    declared: set[str] = set()
    serving: dict[str, list[dict[str, Any]]] = {}
    used_servers: set[str] = set()
    for host in sorted(dict.fromkeys(hosts)):
        if host not in hostvars:
            raise GatewayPlanError(f"model host {host!r} is not in the inventory")
        variables = hostvars[host]
        reason = _exclusion(host, variables, unreachable_set)
        if reason:
            excluded.append({"host": host, "model": None, "reason": reason, "unknown": True})
            continue
        try:
            models = host_models(variables, model_defaults)
        except PlanError as exc:
            excluded.append(
                {
                    "host": host,
                    "model": None,
                    "reason": f"its model plan fails: {exc}",
                    "unknown": True,
                }
            )
            continue
        declared.update(models)
        if not models:
            excluded.append(
                {"host": host, "model": None, "reason": "it serves no model", "unknown": False}
            )
            continue
        failures = _smoke_failures(variables)
        address = variables.get("fleet_host_address") or variables.get("ansible_host") or host
        port = _check_port(host, variables.get("ollama_edge_port") or edge_default)
        address = str(address)
        edge = {
            "host": host,
            "server": _server_name(host, used_servers),
            "address": address,
            "port": port,
            "endpoint": f"[{address}]:{port}" if ":" in address else f"{address}:{port}",
        }
        healthy = [model for model in models if model not in failures]
        if not healthy:
            reasons = "; ".join(f"{model}: {failures[model]}" for model in models)
            excluded.append({"host": host, "model": None, "reason": reasons, "unknown": False})
            continue
        for model in models:
            if model in failures:
                excluded.append(
                    {"host": host, "model": model, "reason": failures[model], "unknown": False}
                )
            else:
                serving.setdefault(model, []).append(edge)
    targets = sorted(serving)
    pools = _pools(targets, serving, int(settings.get("pool_port") or 11500))
    aliases = default_aliases(targets) if settings.get("aliases", True) else {}
    aliases.update(_extra_aliases(settings.get("extra_aliases") or {}, targets, declared))
    public = {target: target for target in targets}
    for alias, target in aliases.items():
        if target in serving:
            public[alias] = target
    fallbacks = _fallbacks(settings, targets, public, declared, aliases)
    models = [
        {
            "name": name,
            "target": public[name],
            "alias": name != public[name],
            "pool": pools[public[name]]["name"],
            "port": pools[public[name]]["port"],
            "hosts": [edge["host"] for edge in serving[public[name]]],
            "fallbacks": fallbacks.get(name, []),
        }
        for name in sorted(public)
    ]
    return {
        "models": models,
        "excluded_lines": [
            f"{e['host']}{' (' + e['model'] + ')' if e['model'] else ''}: {e['reason']}"
            for e in excluded
        ],
        "public_names": sorted(public),
        "declared_names": sorted(declared | set(aliases)),
        # Some host's models could not be known (unreachable, no tier, a failing plan): a
        # name outside declared_names may still be one of them.
        "complete": not any(entry["unknown"] for entry in excluded),
        "pools": [pools[target] for target in targets],
        "excluded": excluded,
    }


def _pools(targets: list[str], serving: dict, first_port: int) -> dict[str, dict[str, Any]]:
    pools: dict[str, dict[str, Any]] = {}
    names: set[str] = set()
    for index, target in enumerate(targets):
        base = "pool_" + _POOL_CHARS.sub("_", target.replace("/", "_").replace(":", "_"))
        name, suffix = base, 2
        while name in names:
            name, suffix = f"{base}_{suffix}", suffix + 1
        names.add(name)
        pools[target] = {
            "name": name,
            "target": target,
            "port": first_port + index,
            "servers": sorted(serving[target], key=lambda edge: edge["host"]),
        }
    return pools


def _extra_aliases(extra: Any, targets: list[str], declared: set[str]) -> dict[str, str]:
    if not isinstance(extra, Mapping):
        raise GatewayPlanError("fleet_gateway_aliases must be a mapping of alias to model name")
    aliases = {}
    for alias, target in extra.items():
        if alias in targets:
            raise GatewayPlanError(
                f"fleet_gateway_aliases: {alias!r} is already the name of a model the fleet serves"
            )
        if target not in declared:
            raise GatewayPlanError(
                f"fleet_gateway_aliases: {alias!r} points at {target!r}, which no model host "
                f"declares (declared: {', '.join(sorted(declared)) or 'none'})"
            )
        aliases[str(alias)] = str(target)
    return aliases


def _fallbacks(
    settings: Mapping, targets: list[str], public: dict, declared: set[str], aliases: dict
) -> dict[str, list[str]]:
    chains: dict[str, list[str]] = {}
    if settings.get("fallbacks_by_size", True):
        by_target = default_fallbacks(targets)
        for name, target in public.items():
            if by_target.get(target):
                chains[name] = list(by_target[target])
    given = settings.get("fallbacks") or {}
    if not isinstance(given, Mapping):
        raise GatewayPlanError("fleet_gateway_fallbacks must be a mapping of model name to a list")
    known = declared | set(aliases)
    for name, chain in given.items():
        if name not in known:
            raise GatewayPlanError(
                f"fleet_gateway_fallbacks: {name!r} is not a model name of the fleet "
                f"(known: {', '.join(sorted(known)) or 'none'})"
            )
        if not isinstance(chain, list):
            raise GatewayPlanError(f"fleet_gateway_fallbacks[{name!r}] must be a list of names")
        for fallback in chain:
            if fallback not in known:
                raise GatewayPlanError(
                    f"fleet_gateway_fallbacks[{name!r}]: {fallback!r} is not a model name of "
                    "the fleet"
                )
            if fallback == name:
                raise GatewayPlanError(f"fleet_gateway_fallbacks[{name!r}] names itself")
        chains[str(name)] = [str(f) for f in chain]
    # Only what is served now can be routed to; a chain keeps its served members in order.
    return {
        name: [f for f in chain if f in public and public[f] != public.get(name)]
        for name, chain in chains.items()
        if name in public
    }


def litellm_config(plan: Mapping, settings: Mapping | None = None) -> dict[str, Any]:
    """LiteLLM's config.yaml as data: one `ollama_chat/` deployment per public name pointing
    at the loopback pool of the model it names, the fallback chains, and the settings that
    keep it offline, quiet about content, and authenticating through the custom_auth hook.

    `settings`: pool_host (127.0.0.1), request_timeout (s), num_retries, auth_hook
    (`module.function`), callbacks (list), error_callback (`module.instance`),
    extra_litellm_settings, extra_router_settings,
    extra_general_settings (operator mappings merged last).
    """
    settings = dict(settings or {})
    pool_host = settings.get("pool_host", "127.0.0.1")
    timeout = int(settings.get("request_timeout", 3600))
    model_list = [
        {
            "model_name": model["name"],
            "litellm_params": {
                "model": f"ollama_chat/{model['target']}",
                "api_base": f"http://{pool_host}:{model['port']}",
                "timeout": timeout,
                "stream_timeout": timeout,
            },
            # Local models cost nothing. Said here (LiteLLM registers model_info once at start),
            # LiteLLM skips its per-request search for a price it cannot find.
            "model_info": {
                "id": model["name"],
                "fleet_target": model["target"],
                "input_cost_per_token": 0.0,
                "output_cost_per_token": 0.0,
            },
        }
        for model in plan.get("models", [])
    ]
    fallbacks = [{m["name"]: m["fallbacks"]} for m in plan.get("models", []) if m["fallbacks"]]
    router_settings: dict[str, Any] = {
        # The HAProxy pool already retried on other hosts; one retry covers a connection cut
        # by a host leaving rotation mid-request.
        "num_retries": int(settings.get("num_retries", 1)),
        "retry_after": 0,
        "timeout": timeout,
        # One deployment per name: a cooled-down pool would refuse requests after its hosts
        # came back. HAProxy decides health, not LiteLLM.
        "disable_cooldowns": True,
        "fallbacks": fallbacks,
    }
    litellm_settings: dict[str, Any] = {
        # The hook's error shaper turns the pools' "no healthy host" into a plain 503.
        "callbacks": [
            *settings.get("callbacks", ["prometheus"]),
            settings.get("error_callback", "fleet_auth.error_shaper"),
        ],
        "turn_off_message_logging": True,
        "redact_user_api_key_info": True,
        "request_timeout": timeout,
        "enable_post_custom_auth_checks": True,
        "drop_params": True,
        "set_verbose": False,
        "json_logs": True,
        # Only loopback reaches LiteLLM; its metrics leave the host through HAProxy's metrics
        # frontend, which the firewall opens to the monitoring hosts alone.
        "require_auth_for_metrics_endpoint": False,
    }
    general_settings: dict[str, Any] = {
        "custom_auth": settings.get("auth_hook", "fleet_auth.user_api_key_auth"),
        "custom_auth_run_common_checks": True,
        "disable_spend_logs": True,
        "disable_adding_master_key_hash_to_db": True,
        "disable_reset_budget": True,
        "store_model_in_db": False,
        "store_prompts_in_spend_logs": False,
        "background_health_checks": False,
    }
    router_settings.update(settings.get("extra_router_settings") or {})
    litellm_settings.update(settings.get("extra_litellm_settings") or {})
    general_settings.update(settings.get("extra_general_settings") or {})
    return {
        "model_list": model_list,
        "router_settings": router_settings,
        "litellm_settings": litellm_settings,
        "general_settings": general_settings,
    }


_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def journal_excerpt(lines: list[str], count: int = 8) -> list[str]:
    """The last `count` lines of a service's journal that say something: LiteLLM's banner
    and boxes left out, a JSON log record reduced to the last line of its message (for a
    traceback, the exception)."""
    kept = []
    for raw in lines:
        line = _ANSI.sub("", str(raw)).strip()
        if not line or any(mark in line for mark in ("█", "╚", "═", "#---", "#  ")):
            continue
        if line.startswith("{"):
            try:
                record = json.loads(line)
            except ValueError:
                record = None
            if isinstance(record, dict) and isinstance(record.get("message"), str):
                message_lines = [m for m in record["message"].strip().splitlines() if m.strip()]
                line = message_lines[-1].strip() if message_lines else line
        kept.append(line[:300])
    return kept[-count:]


def report_section(
    plan: Mapping, address: str, port: int, clients: list[Mapping]
) -> dict[str, Any]:
    """What the fleet report shows of this gateway (fleet_report.serving_summary's input):
    its endpoint, each public name with the hosts serving it (or the model an alias names),
    the hosts left out with their reasons, and the clients' names (never their keys)."""
    host = f"[{address}]" if ":" in str(address) else str(address)
    return {
        "endpoints": [f"https://{host}:{int(port)}/v1"],
        "models": [
            {
                "name": model["name"],
                "hosts": list(model["hosts"]),
                "alias_of": model["target"] if model["alias"] else None,
            }
            for model in plan.get("models", [])
        ],
        "excluded": list(plan.get("excluded_lines", [])),
        "clients": sorted(str(client["name"]) for client in clients),
    }
