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

import datetime
import json
import re
import time
from typing import Any

from ansible_collections.localllm.fleet.plugins.module_utils.model_families import (
    TEMPLATE_FAMILIES,
    family_of,
)
from ansible_collections.localllm.fleet.plugins.module_utils.ollama_api import ModelName
from ansible_collections.localllm.fleet.plugins.module_utils.ollama_release import (
    ReleaseError,
    valid_sha256,
)

SOURCES = ("registry", "gguf", "bundle")
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
        if item["family"] not in TEMPLATE_FAMILIES:
            raise PlanError(
                f"model {entry['name']!r}: family {item['family']!r} has no Modelfile template; "
                f"one of {tuple(TEMPLATE_FAMILIES)}"
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


_THINK_OPEN = "<think>"
_THINK_CLOSE = "</think>"


def split_thinking(content: str, thinking: str = "") -> tuple[str, str]:
    """(answer, thinking) of a reply whose reasoning may sit inline in `content`.

    Since v0.9 Ollama streams reasoning in `message.thinking`; older servers, and templates
    that do not declare thinking, leave `<think>...</think>` in the content, or only the
    closing tag when the template opened the block in the prompt (QwQ). Either is split off.
    """
    if thinking or _THINK_CLOSE not in content:
        return content, thinking
    before, _, after = content.partition(_THINK_CLOSE)
    stripped = before.lstrip()
    if stripped.startswith(_THINK_OPEN):
        stripped = stripped[len(_THINK_OPEN) :]
    elif _THINK_OPEN in before:  # text before the block is part of the answer
        head, _, stripped = before.partition(_THINK_OPEN)
        return (head + after).strip(), stripped.strip()
    return after.lstrip(), stripped.strip()


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
    answer, thought = split_thinking("".join(content), "".join(thinking))
    return {
        "ok": True,
        "error": None,
        "chunks": chunks,
        "content": answer,
        "thinking": thought,
        "done_reason": final.get("done_reason"),
        "eval_count": eval_count,
        "prompt_eval_count": int(final.get("prompt_eval_count") or 0),
        "total_duration_s": round(int(final.get("total_duration") or 0) / 1e9, 3),
        "tokens_per_second": round(eval_count / (eval_ns / 1e9), 1) if eval_ns else None,
    }


# ------------------------------------------------------------------------------ smoke test


def placement(size: int, size_vram: int) -> dict[str, Any]:
    """What `ollama ps` prints in PROCESSOR (cmd/cmd.go), and the share in VRAM in percent."""
    size, size_vram = int(size or 0), int(size_vram or 0)
    if size_vram == 0:
        return {"processor": "100% CPU", "gpu_percent": 0}
    if size_vram == size:
        return {"processor": "100% GPU", "gpu_percent": 100}
    if size_vram > size or size == 0:
        return {"processor": "Unknown", "gpu_percent": None}
    cpu = round((size - size_vram) / size * 100)
    return {"processor": f"{cpu}%/{100 - cpu}% CPU/GPU", "gpu_percent": 100 - cpu}


def _gib(value: int) -> str:
    return f"{int(value) / 2**30:.1f} GiB"


#: An expiry further away than this is "kept loaded": Ollama stores keep_alive -1 as the
#: largest duration (about 292 years), so a model pinned that way expires centuries ahead.
KEPT_LOADED_SECONDS = 100 * 365 * 86400


def _loaded(ps: Any) -> dict[str, dict[str, Any]]:
    models = (ps or {}).get("models") if isinstance(ps, dict) else None
    loaded = {}
    for entry in models or []:
        if isinstance(entry, dict) and entry.get("name"):
            loaded[_canonical(str(entry["name"]))] = entry
    return loaded


def expires_in(entry: dict[str, Any], now: float) -> float | None:
    """Seconds until /api/ps's `expires_at` for a loaded model (None: not a timestamp)."""
    text = str(entry.get("expires_at") or "")
    match = re.match(r"^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(?:\.\d+)?(Z|[+-]\d{2}:\d{2})$", text)
    if not match:
        return None
    stamp = match.group(1) + (match.group(2) if match.group(2) != "Z" else "+00:00")
    try:
        when = datetime.datetime.fromisoformat(stamp)
    except ValueError:
        return None
    return when.timestamp() - now


def _by_target(results: Any) -> dict[str, dict[str, Any]]:
    """Registered loop results (uri over plan entries) by the entry's target."""
    out: dict[str, dict[str, Any]] = {}
    for result in results or []:
        if not isinstance(result, dict) or result.get("skipped"):
            continue
        item = result.get("item")
        if isinstance(item, dict) and item.get("target"):
            out[str(item["target"])] = result
    return out


def _answer_text(result: dict[str, Any] | None) -> str:
    """A chat's NDJSON, or one error line when the request itself failed."""
    if result is None:
        return ""
    status = result.get("status")
    content = result.get("content")
    if status == 200 and isinstance(content, str) and content:
        return content
    body = result.get("json")
    error = body.get("error") if isinstance(body, dict) else None
    error = error or result.get("msg") or "no answer"
    prefix = f"HTTP {status}: " if isinstance(status, int) and status > 0 else ""
    return json.dumps({"error": f"{prefix}{error}"})


def capabilities(show_results: Any) -> dict[str, list[str]]:
    """{target: /api/show capabilities} from the registered show loop."""
    caps = {}
    for target, result in _by_target(show_results).items():
        body = result.get("json")
        if result.get("status") == 200 and isinstance(body, dict):
            caps[target] = [str(c) for c in body.get("capabilities") or []]
    return caps


def thinking_models(show_results: Any) -> list[str]:
    """The targets whose /api/show lists the thinking capability."""
    return sorted(t for t, caps in capabilities(show_results).items() if "thinking" in caps)


def smoke_results(  # noqa: PLR0917 - one argument per thing the smoke test saw
    plan: list[dict[str, Any]],
    show_results: Any,
    live_results: Any,
    reasoning_results: Any,
    ps: Any,
    expect_gpu: bool = False,
    kept: str = "",
    placement_action: str = "fail",
    now: float | None = None,
) -> list[dict[str, Any]]:
    """One entry per planned model: did it pass, and why not.

    The results are the smoke test's registered loops over the plan: /api/show (for the
    capabilities), a short chat with thinking off where the model thinks, a chat with
    thinking on (reasoning models only), and `ps`, /api/ps after both. On a GPU host
    (`expect_gpu`) a loaded model must be 100% in VRAM (placement_action fail; warn only
    reports it); `kept` (the preloaded model) must be loaded and never expire.

    Each entry keeps the keys the gateway and the report read: model, ok (the whole test
    passed), error, content, thinking, reasoning; and adds passed, status, checks,
    done_reason, eval_count, tokens_per_second, processor, gpu_percent, size, size_vram,
    context_length, kept_loaded, preloaded, warning.
    """
    caps_by_target = capabilities(show_results)
    live = {t: _answer_text(r) for t, r in _by_target(live_results).items()}
    reasoning = {t: _answer_text(r) for t, r in _by_target(reasoning_results).items()}
    now = now if now is not None else time.time()
    loaded = _loaded(ps)
    results = []
    for item in plan:
        target = item["target"]
        thinks = "thinking" in caps_by_target.get(target, [])
        problems: list[str] = []
        checks: dict[str, Any] = {}
        summary = chat_summary(live.get(target, ""))
        checks["live"] = "passed"
        if not summary["ok"]:
            problems.append(f"no answer: {summary['error']}")
            checks["live"] = "failed"
        elif not summary.get("content", "").strip():
            problems.append("an empty answer")
            checks["live"] = "failed"
        answer = summary.get("content") or ""
        thought = ""
        final_reason = summary.get("done_reason")
        if thinks and target in reasoning:
            deep = chat_summary(reasoning[target])
            thought = deep.get("thinking") or ""
            checks["reasoning"] = "passed"
            if not deep["ok"]:
                problems.append(f"no reasoning answer: {deep['error']}")
                checks["reasoning"] = "failed"
            elif deep.get("done_reason") != "stop":
                problems.append(
                    "the reasoning check ran out of its token budget (done_reason "
                    f"{deep.get('done_reason')!r} after {deep.get('eval_count')} tokens): raise "
                    "ollama_models_smoke_reasoning_num_predict"
                )
                checks["reasoning"] = "failed"
            elif not thought.strip():
                problems.append("no thinking from a reasoning model")
                checks["reasoning"] = "failed"
            elif not (deep.get("content") or "").strip():
                problems.append("thinking but no answer after it")
                checks["reasoning"] = "failed"
            elif _THINK_OPEN in deep["content"] or _THINK_CLOSE in deep["content"]:
                problems.append("thinking and answer are not separated")
                checks["reasoning"] = "failed"
            answer = answer or deep.get("content") or ""
            final_reason = deep.get("done_reason") or final_reason
        entry = loaded.get(_canonical(target))
        where: dict[str, Any] = {"processor": None, "gpu_percent": None}
        if entry is not None:
            where = placement(entry.get("size", 0), entry.get("size_vram", 0))
            if expect_gpu and where["gpu_percent"] != 100:
                text = (
                    f"runs {where['processor']}: {_gib(entry.get('size_vram', 0))} of "
                    f"{_gib(entry.get('size', 0))} in VRAM at num_ctx "
                    f"{entry.get('context_length')} (expected 100% GPU)"
                )
                checks["placement"] = "failed" if placement_action == "fail" else "warned"
                if placement_action == "fail":
                    problems.append(text)
                else:
                    where["warning"] = text
            else:
                checks["placement"] = "passed"
        is_kept = bool(kept) and _canonical(target) == _canonical(kept)
        kept_loaded = None
        if is_kept:
            remaining = expires_in(entry, now) if entry is not None else None
            kept_loaded = remaining is not None and remaining > KEPT_LOADED_SECONDS
            checks["kept_loaded"] = "passed" if kept_loaded else "failed"
            if entry is None:
                problems.append(
                    "not loaded after the test: the preloaded model was unloaded (another "
                    "model did not fit beside it, or Ollama restarted without the preload)"
                )
            elif not kept_loaded:
                problems.append(
                    f"loaded but not kept: it expires at {entry.get('expires_at')} (keep_alive "
                    "-1 expected; a request with its own keep_alive or a reload reset it)"
                )
        results.append(
            {
                "model": target,
                "name": item.get("name"),
                "reasoning": thinks,
                "ok": not problems,
                "passed": not problems,
                "status": "passed" if not problems else "failed",
                "error": "; ".join(problems) or None,
                "checks": checks,
                "content": answer,
                "thinking": thought,
                "done_reason": final_reason,
                "eval_count": summary.get("eval_count"),
                "tokens_per_second": summary.get("tokens_per_second"),
                "processor": where["processor"],
                "gpu_percent": where["gpu_percent"],
                "warning": where.get("warning"),
                "size": entry.get("size") if entry else None,
                "size_vram": entry.get("size_vram") if entry else None,
                "context_length": entry.get("context_length") if entry else None,
                "preloaded": is_kept,
                "kept_loaded": kept_loaded,
            }
        )
    return results


def model_placement(ps: Any, name: str) -> dict[str, Any]:
    """Where `name` sits according to /api/ps: loaded, processor, gpu_percent and the figures."""
    entry = _loaded(ps).get(_canonical(name))
    if entry is None:
        return {"loaded": False, "processor": None, "gpu_percent": None, "detail": "not loaded"}
    where = placement(entry.get("size", 0), entry.get("size_vram", 0))
    detail = (
        f"{_gib(entry.get('size_vram', 0))} of {_gib(entry.get('size', 0))} in VRAM at "
        f"num_ctx {entry.get('context_length')}, expires {entry.get('expires_at')}"
    )
    return {"loaded": True, **where, "detail": detail}


def reasoning_budget(num_ctx: Any, budget: int) -> int:
    """The reasoning check's num_predict: the budget, within the model's context (the prompt
    and a margin kept out)."""
    try:
        context = int(num_ctx)
    except (TypeError, ValueError):
        return int(budget)
    return max(64, min(int(budget), context - 256))


# ------------------------------------------------------------------------------ GPU check

_LOGFMT = re.compile(r'(\w[\w.]*)=("(?:[^"\\]|\\.)*"|\S*)')


def _logfmt(line: str) -> dict[str, str]:
    fields = {}
    for key, raw in _LOGFMT.findall(line):
        text = raw
        if raw.startswith('"'):
            try:
                text = json.loads(raw)
            except ValueError:
                text = raw.strip('"')
        fields[key] = text
    return fields


def startup_devices(journal: str) -> dict[str, Any]:
    """What Ollama's last start reported about compute devices (discover/types.go).

    `journal` is the service's log (journalctl -o cat). Only lines after the last
    `msg="server config"` (one per start) count. Returns cuda (the CUDA devices found, each
    {id, name, description, compute, total, available}), cpu_only (it fell back to the CPU),
    too_old (its "NVIDIA driver too old" lines), lines (the lines that say so, to quote) and
    started (whether a start was found at all).
    """
    lines = str(journal).splitlines()
    start = max((i for i, line in enumerate(lines) if 'msg="server config"' in line), default=-1)
    if start < 0:
        return {"started": False, "cuda": [], "cpu_only": False, "too_old": [], "lines": []}
    cuda: list[dict[str, str]] = []
    quoted: list[str] = []
    too_old: list[str] = []
    cpu_only = False
    for line in lines[start + 1 :]:
        if 'msg="inference compute"' in line:
            fields = _logfmt(line)
            library = fields.get("library", "").lower()
            if library == "cuda":
                cuda.append(
                    {
                        key: fields.get(key, "")
                        for key in ("id", "name", "description", "compute", "total", "available")
                    }
                )
            elif library == "cpu":
                cpu_only = True
                quoted.append(line.strip())
        elif 'msg="NVIDIA driver too old"' in line:
            too_old.append(line.strip())
            quoted.append(line.strip())
    return {
        "started": True,
        "cuda": cuda,
        "cpu_only": cpu_only,
        "too_old": too_old,
        "lines": quoted[:8],
    }
