# Copyright (c) localllm.fleet contributors
# Apache License 2.0 (see galaxy.yml)
"""Which models a host gets, from where, and how they are registered (pure functions).

The ollama_models role turns its inputs into one list of model entries here:
- `declared`: the host's `ollama_models` from the gpu_tier inventory (entries
  `{name, family, parameter_size, size_mib, num_ctx}`), or None for a host gpu_tier could not
  read (then nothing is planned: a host that was not read must never be pruned);
- `extras`: what operators add, layered (all, group, host), names or dicts;
- `overrides`: per model name, settings that win (parameters, system, messages, ...);
- `defaults`: the role's settings (source, namespace, registry, GGUF mirror, ...).

Each entry says where its base comes from (registry reference, GGUF file, bundle), the
name the tuned model is registered under, and what its Modelfile template needs.
"""

from __future__ import annotations

import json
import re
from typing import Any

from ansible_collections.localllm.fleet.plugins.module_utils.ollama_api import ModelName
from ansible_collections.localllm.fleet.plugins.module_utils.ollama_release import (
    ReleaseError,
    valid_sha256,
)

SOURCES = ("registry", "gguf", "bundle")
FAMILIES = ("deepseek-r1", "qwq", "gemma3")
_NAME = re.compile(
    r"^(?P<model>[A-Za-z0-9][A-Za-z0-9._-]*)(?::(?P<tag>[A-Za-z0-9_][A-Za-z0-9._-]*))?$"
)
_ENTRY_KEYS = {
    "name",
    "family",
    "source",
    "target",
    "num_ctx",
    "parameters",
    "system",
    "messages",
    "license",
    "template",
    "size_mib",
    "parameter_size",
    "registry",
    "registry_namespace",
    "insecure",
    "gguf_url",
    "gguf_sha256",
    "gguf_local",
    "gguf_file",
    "bundle_model",
}


class PlanError(ValueError):
    """An input the operator must fix, said so that they can."""


def split_name(name: str) -> tuple[str, str]:
    """`deepseek-r1:32b` -> (`deepseek-r1`, `32b`); the tag defaults to `latest`."""
    match = _NAME.match(str(name).strip())
    if not match:
        raise PlanError(
            f"model name {name!r} is not of the form MODEL[:TAG] (letters, digits, '.', '_', '-')"
        )
    return match["model"], match["tag"] or "latest"


def family_of(model: str) -> str:
    """The Modelfile template family: the longest known family the model name starts with."""
    for family in sorted(FAMILIES, key=len, reverse=True):
        if model == family or model.startswith(family + "-") or model.startswith(family + ":"):
            return family
    return "generic"


def _as_entry(item: Any, where: str) -> dict[str, Any]:
    if isinstance(item, str):
        return {"name": item}
    if isinstance(item, dict):
        if "name" not in item:
            raise PlanError(f"{where}: every model needs a `name` (got {sorted(item)})")
        unknown = sorted(set(item) - _ENTRY_KEYS)
        if unknown:
            raise PlanError(
                f"{where}: model {item['name']!r} has unknown settings {unknown}; "
                f"known: {sorted(_ENTRY_KEYS)}"
            )
        return dict(item)
    raise PlanError(f"{where}: a model is a name or a mapping, not {type(item).__name__}")


def merge_layers(*layers: Any) -> list[dict[str, Any]]:
    """Concatenate layered lists (all -> group -> host); a later entry of the same name
    updates the earlier one rather than adding a second model."""
    merged: dict[str, dict[str, Any]] = {}
    for index, layer in enumerate(layers):
        if layer is None:
            continue
        if not isinstance(layer, list):
            raise PlanError(f"model list #{index + 1} must be a list, not {type(layer).__name__}")
        for item in layer:
            entry = _as_entry(item, f"model list #{index + 1}")
            split_name(entry["name"])
            previous = merged.get(entry["name"], {})
            parameters = {
                **_check_parameters(entry["name"], previous.get("parameters")),
                **_check_parameters(entry["name"], entry.get("parameters")),
            }
            merged[entry["name"]] = {**previous, **entry, "parameters": parameters}
    return list(merged.values())


def _check_parameters(name: str, parameters: Any) -> dict[str, Any]:
    if parameters is None:
        return {}
    if not isinstance(parameters, dict):
        raise PlanError(f"model {name!r}: parameters must be a mapping, not {parameters!r}")
    return dict(parameters)


def plan_models(
    declared: list | None,
    extras: list | None = None,
    overrides: dict | None = None,
    defaults: dict | None = None,
) -> list[dict[str, Any]]:
    """The host's models, each a dict the role and the Modelfile templates consume."""
    defaults = defaults or {}
    overrides = overrides or {}
    if not isinstance(overrides, dict):
        raise PlanError("ollama_models_overrides must be a mapping of model name to settings")
    if declared is None and not extras:
        return []
    entries = merge_layers(declared or [], extras or [])
    source_default = defaults.get("source", "registry")
    namespace = str(defaults.get("namespace", "") or "")
    common_parameters = _check_parameters("(all models)", defaults.get("parameters"))
    planned: list[dict[str, Any]] = []
    targets: dict[str, str] = {}
    for declared_entry in entries:
        override = overrides.get(declared_entry["name"]) or {}
        if not isinstance(override, dict):
            raise PlanError(
                f"ollama_models_overrides[{declared_entry['name']!r}] must be a mapping"
            )
        entry = {
            **declared_entry,
            **override,
            "parameters": {
                **common_parameters,
                **_check_parameters(declared_entry["name"], declared_entry.get("parameters")),
                **_check_parameters(declared_entry["name"], override.get("parameters")),
            },
        }
        model, tag = split_name(entry["name"])
        source = entry.get("source") or source_default
        if source not in SOURCES:
            raise PlanError(f"model {entry['name']!r}: source {source!r} is not one of {SOURCES}")
        base_ref = f"{model}:{tag}"
        target = entry.get("target") or (f"{namespace}/{base_ref}" if namespace else base_ref)
        item: dict[str, Any] = {
            "name": entry["name"],
            "model": model,
            "tag": tag,
            "family": entry.get("family") or family_of(model),
            "source": source,
            "target": target,
            "num_ctx": entry.get("num_ctx"),
            "parameters": entry["parameters"],
            "system": entry.get("system"),
            "messages": entry.get("messages") or [],
            "license": entry.get("license"),
            "template": entry.get("template"),
            "modelfile": re.sub(r"[^A-Za-z0-9._-]", "_", target) + ".Modelfile",
        }
        if item["family"] not in (*FAMILIES, "generic"):
            raise PlanError(
                f"model {entry['name']!r}: family {item['family']!r} has no Modelfile template; "
                f"one of {(*FAMILIES, 'generic')}"
            )
        item.update(_base(entry, source, model, tag, defaults))
        if item["from"] == target:
            raise PlanError(
                f"model {entry['name']!r} would be registered under its own base's name "
                f"{target!r}; set ollama_models_namespace or give the model a `target`"
            )
        if target in targets:
            raise PlanError(
                f"models {targets[target]!r} and {entry['name']!r} would both be registered "
                f"as {target!r}"
            )
        targets[target] = entry["name"]
        planned.append(item)
    return planned


def _base(entry: dict, source: str, model: str, tag: str, defaults: dict) -> dict[str, Any]:
    """Where the base comes from, and what the Modelfile's FROM says."""
    if source == "registry":
        registry = str(entry.get("registry", defaults.get("registry", "")) or "").rstrip("/")
        namespace = (
            entry.get("registry_namespace") or defaults.get("registry_namespace") or "library"
        )
        reference = f"{registry}/{namespace}/{model}:{tag}" if registry else f"{model}:{tag}"
        if not registry and namespace != "library":
            reference = f"{namespace}/{model}:{tag}"
        insecure = bool(entry.get("insecure", defaults.get("insecure", False)))
        return {"from": reference, "pull": reference, "insecure": insecure}
    if source == "gguf":
        pattern = str(defaults.get("gguf_filename", "{model}-{tag}-q4_k_m.gguf"))
        filename = entry.get("gguf_file") or pattern.format(model=model, tag=tag)
        local = entry.get("gguf_local") or ""
        base_url = str(defaults.get("gguf_base_url", "") or "").rstrip("/")
        url = entry.get("gguf_url") or (f"{base_url}/{filename}" if base_url else "")
        if not url and not local:
            raise PlanError(
                f"model {entry['name']!r}: source gguf needs ollama_models_gguf_base_url, "
                "or gguf_url / gguf_local on the model"
            )
        given = entry.get("gguf_sha256") or ""
        try:
            sha256 = valid_sha256(given) if given else ""
        except ReleaseError:
            raise PlanError(
                f"model {entry['name']!r}: gguf_sha256 {given!r} is not a sha256"
            ) from None
        cache = str(defaults.get("cache_dir", "/var/cache/localllm-fleet/models")).rstrip("/")
        path = f"{cache}/{filename.rsplit('/', 1)[-1]}"
        return {
            "from": path,
            "gguf_url": url,
            "gguf_local": local,
            "gguf_sha256": sha256,
            "gguf_path": path,
            "gguf_filename": filename.rsplit("/", 1)[-1],
        }
    # bundle: the base arrives in the store under the name it was exported with
    return {"from": entry.get("bundle_model") or f"{model}:{tag}"}


def base_names(plan: list[dict[str, Any]]) -> list[str]:
    """Model names the plan uses as bases (a pruner must never remove them)."""
    return sorted({item["from"] for item in plan if item["source"] != "gguf"})


def prune_candidates(
    existing: list[str], plan: list[dict[str, Any]], keep: list[str] | None = None
) -> list[str]:
    """Models on the host that nobody declared, are no base in use and are not kept."""
    wanted = {_canonical(item["target"]) for item in plan}
    wanted |= {_canonical(name) for name in base_names(plan)}
    wanted |= {_canonical(name) for name in keep or []}
    return sorted(name for name in existing if _canonical(name) not in wanted)


def _canonical(name: str) -> str:
    """One name as Ollama compares it: the full form with its defaults filled in, lower-cased
    (`X` == `x:latest` == `registry.ollama.ai/library/x:latest`)."""
    text = str(name).strip()
    try:
        parsed = ModelName.parse(text)
    except ValueError:
        return text.lower()
    return f"{parsed.host}/{parsed.namespace}/{parsed.model}:{parsed.tag}".lower()


def chat_summary(ndjson: str) -> dict[str, Any]:
    """What a streamed /api/chat said: content, thinking, the final message's counters and
    tokens per second (eval_count / eval_duration), or the error it streamed."""
    content: list[str] = []
    thinking: list[str] = []
    final: dict[str, Any] = {}
    chunks = 0
    for raw in str(ndjson).splitlines():
        line = raw.strip()
        if not line:
            continue
        try:
            message = json.loads(line)
        except ValueError:
            return {"ok": False, "error": f"not NDJSON: {line[:120]!r}", "chunks": chunks}
        if not isinstance(message, dict):
            return {"ok": False, "error": f"not a JSON object: {line[:120]!r}", "chunks": chunks}
        if "error" in message:
            return {"ok": False, "error": str(message["error"]), "chunks": chunks}
        chunks += 1
        part = message.get("message") or {}
        if not isinstance(part, dict):
            return {"ok": False, "error": f"not a chat message: {line[:120]!r}", "chunks": chunks}
        content.append(str(part.get("content") or ""))
        thinking.append(str(part.get("thinking") or ""))
        if message.get("done"):
            final = message
    if not final:
        return {
            "ok": False,
            "error": "the stream ended without a final (done) message",
            "chunks": chunks,
        }
    eval_count = int(final.get("eval_count") or 0)
    eval_ns = int(final.get("eval_duration") or 0)
    return {
        "ok": True,
        "error": None,
        "chunks": chunks,
        "content": "".join(content),
        "thinking": "".join(thinking),
        "done_reason": final.get("done_reason"),
        "eval_count": eval_count,
        "prompt_eval_count": int(final.get("prompt_eval_count") or 0),
        "total_duration_s": round(int(final.get("total_duration") or 0) / 1e9, 3),
        "tokens_per_second": round(eval_count / (eval_ns / 1e9), 1) if eval_ns else None,
    }
