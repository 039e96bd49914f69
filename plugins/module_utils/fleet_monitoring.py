# Copyright (c) localllm.fleet contributors
# Apache License 2.0 (see galaxy.yml)
"""What the monitoring roles derive from the inventory, on the control node.

- which hosts carry exporters (the hosts the serving layer covers, so that the firewall it
  loads is there to keep the exporters' ports for the monitoring hosts alone);
- Prometheus' scrape jobs: node_exporter on every such host, HAProxy's exporter where HAProxy
  runs (model hosts' edges and gateways), LiteLLM's metrics on gateways, Prometheus and
  Alertmanager themselves; each target labelled `instance=<inventory name>` so that series of
  one host join across jobs;
- the models a host's tier expects to see loaded.

Pure functions (stdlib and the collection's own module_utils) so that filters and tests share
them; errors are MonitoringError with what to change.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Iterable, Mapping
from typing import Any

from ansible_collections.localllm.fleet.plugins.module_utils.models_plan import (
    PlanError,
    merge_layers,
    split_name,
)

__all__ = [
    "MonitoringError",
    "expected_models",
    "model_hosts",
    "monitored_hosts",
    "scrape_configs",
    "scrape_targets",
    "smoke_record",
    "smoke_stamp",
    "smoke_stamp_digest",
    "smoke_stamp_record",
]

SPECIAL_GROUPS = ("gateway", "monitoring")


class MonitoringError(ValueError):
    """A monitoring setting that cannot be used, with what to change."""


def _tier_groups(groups: Mapping[str, Iterable[str]]) -> list[str]:
    return sorted(name for name in groups if name.startswith("tier_"))


def _unique(names: Iterable[str]) -> list[str]:
    seen: dict[str, None] = {}
    for name in names:
        seen.setdefault(str(name), None)
    return list(seen)


def monitored_hosts(groups: Mapping[str, Iterable[str]]) -> list[str]:
    """The hosts the serving layer (playbooks/serve.yml) covers, in inventory order: every host
    with a tier plus gateways and monitoring hosts; every host when the inventory has no tiers."""
    tiers = _tier_groups(groups)
    if not tiers:
        return _unique(groups.get("all", []))
    chosen = set()
    for name in [*tiers, *SPECIAL_GROUPS]:
        chosen.update(groups.get(name, []))
    ordered = [h for h in groups.get("all", []) if h in chosen]
    return _unique([*ordered, *sorted(chosen - set(ordered))])


def model_hosts(groups: Mapping[str, Iterable[str]]) -> list[str]:
    """Hosts that serve models (and so run Ollama and the edge): those with a tier, or without
    tiers in the inventory, every host that is neither a gateway nor a monitoring host."""
    tiers = _tier_groups(groups)
    if tiers:
        members = set()
        for name in tiers:
            members.update(groups[name])
        return [h for h in monitored_hosts(groups) if h in members]
    special = set()
    for name in SPECIAL_GROUPS:
        special.update(groups.get(name, []))
    return [h for h in monitored_hosts(groups) if h not in special]


def _endpoint(address: str, port: int, where: str) -> str:
    text = str(address).strip()
    if not text:
        raise MonitoringError(f"{where}: no address to scrape")
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise MonitoringError(f"{where}: port must be a number 1-65535, got {port!r}")
    try:
        if ipaddress.ip_address(text.strip("[]")).version == 6:
            return f"[{text.strip('[]')}]:{port}"
    except ValueError:
        pass
    return f"{text}:{port}"


def scrape_targets(
    groups: Mapping[str, Iterable[str]], addresses: Mapping[str, str]
) -> list[dict[str, Any]]:
    """One entry per monitored host: its name, the address fleet members use, and the jobs
    that scrape it (`node` everywhere, `haproxy` on model hosts and gateways, `litellm` on
    gateways)."""
    models = set(model_hosts(groups))
    gateways = set(groups.get("gateway", []))
    result = []
    for name in monitored_hosts(groups):
        jobs = ["node"]
        if name in models or name in gateways:
            jobs.append("haproxy")
        if name in gateways:
            jobs.append("litellm")
        result.append({"name": name, "address": addresses.get(name, name), "jobs": jobs})
    return result


_JOB_SETTINGS = {
    "node": ("node_port", "node_path"),
    "haproxy": ("haproxy_port", "haproxy_path"),
    "litellm": ("litellm_port", "litellm_path"),
}


def scrape_configs(targets: list[dict[str, Any]], settings: Mapping[str, Any]) -> list[dict]:
    """Prometheus `scrape_configs` for the targets, plus Prometheus and Alertmanager themselves.

    settings: node_port/node_path, haproxy_port/haproxy_path, litellm_port/litellm_path,
    prometheus_port, alertmanager_port, litellm_drop_labels (labels LiteLLM attaches that may
    identify a key or a person: dropped at scrape time so they are never stored).
    """
    for key in ("node_path", "haproxy_path", "litellm_path"):
        path = str(settings.get(key, "/metrics"))
        if not path.startswith("/"):
            raise MonitoringError(f"{key} must start with '/', got {path!r}")
    jobs: list[dict[str, Any]] = []
    for job, (port_key, path_key) in _JOB_SETTINGS.items():
        static = []
        for target in targets:
            if job not in target["jobs"]:
                continue
            where = f"{job} target {target['name']}"
            static.append(
                {
                    "targets": [_endpoint(target["address"], settings.get(port_key), where)],
                    "labels": {"instance": target["name"]},
                }
            )
        if not static:
            continue
        config: dict[str, Any] = {
            "job_name": job,
            "metrics_path": str(settings.get(path_key, "/metrics")),
            "static_configs": static,
        }
        drop = [str(label) for label in settings.get("litellm_drop_labels") or []]
        if job == "litellm" and drop:
            config["metric_relabel_configs"] = [
                {"action": "labeldrop", "regex": "|".join(sorted(set(drop)))}
            ]
        jobs.append(config)
    for job, key in (("prometheus", "prometheus_port"), ("alertmanager", "alertmanager_port")):
        jobs.append(
            {
                "job_name": job,
                "static_configs": [
                    {
                        "targets": [_endpoint("127.0.0.1", settings.get(key), job)],
                        "labels": {"instance": str(settings.get("self_name") or "localhost")},
                    }
                ],
            }
        )
    return jobs


def expected_models(declared: Any, namespace: str = "fleet", count: int = 1) -> list[str]:
    """The names a host's tier expects Ollama to have loaded: the first `count` models of
    `ollama_models` (gpu_tier lists the tier's primary model first), as the ollama_models role
    registers them (<namespace>/<model>:<tag>, or the model's own `target`)."""
    if declared is None:
        return []
    try:
        entries = merge_layers(declared)
        names = []
        for entry in entries[: max(int(count), 0)]:
            model, tag = split_name(entry["name"])
            base = f"{model}:{tag}"
            names.append(str(entry.get("target") or (f"{namespace}/{base}" if namespace else base)))
    except PlanError as exc:
        raise MonitoringError(f"ollama_models: {exc}") from exc
    return names


def smoke_record(results: Any, timestamp: float) -> dict[str, Any]:
    """What the collector exports of a smoke test (ollama_models_smoke_results): per model,
    whether it answered and its tokens per second. The prompt, the answer and the thinking
    are left out, so no text a model read or wrote reaches a metric."""
    if not isinstance(results, list):
        raise MonitoringError(f"smoke results must be a list, not {type(results).__name__}")
    entries = []
    for result in results:
        if not isinstance(result, Mapping) or not result.get("model"):
            raise MonitoringError(f"a smoke result without a model: {result!r}"[:200])
        rate = result.get("tokens_per_second")
        count = result.get("eval_count")
        entries.append(
            {
                "model": str(result["model"]),
                "ok": bool(result.get("ok")),
                "tokens_per_second": rate
                if isinstance(rate, (int, float)) and not isinstance(rate, bool)
                else None,
                "eval_count": count
                if isinstance(count, int) and not isinstance(count, bool)
                else None,
            }
        )
    return {"timestamp": int(timestamp), "results": entries}


# The ollama_models role's smoke stamp (`.smoke-passed`): its first line is the digest of what
# the last passing test covered (the next run tests again when it differs), its second the
# test's record in smoke_record's shape, for the fleet report. Bigger than any stamp the role
# writes (a digest and a few figures per model):
SMOKE_STAMP_MAX_BYTES = 65536


def smoke_stamp(results: Any, digest: str, timestamp: float) -> str:
    """The stamp of a passing smoke test (ollama_models_smoke_results) of what `digest`
    covers: the digest, then the test's figures, never its text (smoke_record)."""
    return f"{digest}\n{json.dumps(smoke_record(results, timestamp))}\n"


def smoke_stamp_digest(stamp: str) -> str:
    """The digest a stamp holds ('' for no stamp). A stamp of an older release, the digest
    alone, holds it too, so upgrading does not test again."""
    lines = stamp.splitlines()
    return lines[0].strip() if lines else ""


def smoke_stamp_record(stamp: bytes) -> dict[str, Any] | None:
    """The last passing smoke test's figures from a stamp as read (SMOKE_STAMP_MAX_BYTES and
    one more are enough to tell). None for a stamp without a record (an older release's, the
    digest alone): the next test writes one. The record is rebuilt through smoke_record, so
    whatever else an edited stamp holds (text a model wrote, say) is dropped; a stamp that is
    not one raises MonitoringError."""
    if len(stamp) > SMOKE_STAMP_MAX_BYTES:
        raise MonitoringError(f"the smoke stamp is more than {SMOKE_STAMP_MAX_BYTES} bytes")
    try:
        lines = stamp.decode("utf-8").splitlines()
    except UnicodeDecodeError as exc:
        raise MonitoringError("the smoke stamp is not UTF-8 text") from exc
    if len(lines) < 2 or not lines[1].strip():
        return None
    try:
        record = json.loads(lines[1])
    except ValueError as exc:
        raise MonitoringError(f"the smoke stamp's record is not JSON ({exc})") from exc
    if not isinstance(record, Mapping):
        raise MonitoringError("the smoke stamp's record is not an object")
    timestamp = record.get("timestamp")
    if not isinstance(timestamp, int) or isinstance(timestamp, bool) or timestamp < 0:
        raise MonitoringError(f"the smoke stamp's timestamp is not a time: {timestamp!r}"[:200])
    return smoke_record(record.get("results"), timestamp)
