# Copyright (c) localllm.fleet contributors
# Apache License 2.0 (see galaxy.yml)
"""The policy as data: the model catalog, the tier ladder, and what operators may change.

ModelSpec (size on disk, the shape that sizes the KV cache, context limits), Tier and
Policy with the defaults (DEFAULT_CATALOG, DEFAULT_TIERS, DEFAULT_POLICY); the validation of
an operator's `policy` option (policy_from_config) and of one host's override variables
(overrides_from_vars, OVERRIDE_VARS). Pure standard library, Python 3.9+.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from fractions import Fraction
from typing import Any

from ansible_collections.localllm.fleet.plugins.module_utils.model_families import (
    TEMPLATE_FAMILIES,
    family_of,
)
from ansible_collections.localllm.fleet.plugins.module_utils.nvidia_smi import GpuDevice

MIB = 2**20
GB = 10**9

#: Bytes per cached element for OLLAMA_KV_CACHE_TYPE (ggml block sizes: q8_0 packs 32 values
#: in 34 bytes, q4_0 in 18).
KV_BYTES = {"f16": Fraction(2), "q8_0": Fraction(34, 32), "q4_0": Fraction(18, 32)}


class PolicyError(ValueError):
    """A policy or override value is wrong. `option` names where (e.g. policy.tiers[2].context)."""

    def __init__(self, option: str, message: str) -> None:
        super().__init__(f"{option}: {message}")
        self.option = option
        self.message = message


# ------------------------------------------------------------------------------ the catalog


@dataclass(frozen=True)
class ModelSpec:
    """A model as Ollama's library ships it (default tag, Q4_K_M) and the shape of its KV cache.

    key_length/value_length are per KV head; for DeepSeek-V3 (671b) they are the unpacked
    MLA sizes llama.cpp caches (192/128), the conservative figure (see docs/tiers.md).
    `family` is the Modelfile template family (model_families), not the name's prefix.
    """

    name: str
    family: str
    parameters: str
    size_bytes: int
    layers: int
    kv_heads: int
    key_length: int
    value_length: int
    context_max: int

    @property
    def size_mib(self) -> int:
        return -(-self.size_bytes // MIB)

    @property
    def layer_mib(self) -> int:
        """Weights per layer: what a split across GPUs may strand on each boundary."""
        return -(-self.size_mib // self.layers)

    @property
    def flash_attention(self) -> bool:
        """Whether Ollama can run this model with flash attention, which a quantized KV cache
        needs: only when keys and values have the same head size (fs/ggml/ggml.go
        SupportsFlashAttention). DeepSeek-V3's 671b (192/128) cannot."""
        return self.key_length == self.value_length

    def kv_bytes_per_token(self, cache_type: str = "f16") -> Fraction:
        return (
            self.layers
            * self.kv_heads
            * (self.key_length + self.value_length)
            * KV_BYTES[cache_type]
        )

    def kv_cache_mib(self, num_ctx: int, num_parallel: int = 1, cache_type: str = "f16") -> int:
        return math.ceil(self.kv_bytes_per_token(cache_type) * num_ctx * num_parallel / MIB)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "family": self.family,
            "parameters": self.parameters,
            "size_bytes": self.size_bytes,
            "size_mib": self.size_mib,
            "layers": self.layers,
            "kv_heads": self.kv_heads,
            "key_length": self.key_length,
            "value_length": self.value_length,
            "context_max": self.context_max,
        }


def _model(  # noqa: PLR0917 - one catalog line per model reads best positionally
    name: str,
    size_gb: float,
    layers: int,
    kv_heads: int,
    head_dim: int,
    context_max: int,
    value_length: int | None = None,
) -> ModelSpec:
    parameters = name.split(":", 1)[1]
    return ModelSpec(
        name=name,
        family=family_of(name),
        parameters=parameters,
        size_bytes=round(size_gb * GB),
        layers=layers,
        kv_heads=kv_heads,
        key_length=head_dim,
        value_length=value_length or head_dim,
        context_max=context_max,
    )


# Sizes: Ollama library listings (decimal GB, default Q4_K_M tags), docs/reference/ollama.md.
# Shapes: each model's published config (num_hidden_layers, num_key_value_heads, head_dim).
DEFAULT_CATALOG: Mapping[str, ModelSpec] = {
    m.name: m
    for m in (
        # DeepSeek-R1 distills: Qwen2.5 (1.5b, 7b, 14b, 32b), Qwen3 (8b, since May 2025),
        # Llama 3.3 (70b).
        _model("deepseek-r1:1.5b", 1.1, 28, 2, 128, 131072),
        _model("deepseek-r1:7b", 4.7, 28, 4, 128, 131072),
        _model("deepseek-r1:8b", 5.2, 36, 8, 128, 131072),
        _model("deepseek-r1:14b", 9.0, 48, 8, 128, 131072),
        _model("deepseek-r1:32b", 20, 64, 8, 128, 131072),
        _model("deepseek-r1:70b", 43, 80, 8, 128, 131072),
        # DeepSeek-V3 architecture: 61 layers, 128 heads, K 192 (128 nope + 64 rope), V 128.
        _model("deepseek-r1:671b", 404, 61, 128, 192, 163840, value_length=128),
        _model("qwq:32b", 20, 64, 8, 128, 40960),
        # Gemma 3: sliding-window layers are counted as full attention (an over-estimate).
        _model("gemma3:1b", 0.815, 26, 1, 256, 32768),
        _model("gemma3:4b", 3.3, 34, 4, 256, 131072),
        _model("gemma3:12b", 8.1, 48, 8, 256, 131072),
        _model("gemma3:27b", 17, 62, 16, 128, 131072),
        _model("llama3.3:70b", 43, 80, 8, 128, 131072),
    )
}


@dataclass(frozen=True)
class Tier:
    """A rung of the ladder: its models (the first decides the fit) and its context window.

    The fit must hold at `context`; num_ctx then doubles while it still fits, up to
    `max_context` (and the model's own limit). `alternatives` are the models an operator may
    select instead (gpu_tier_models or policy.tier_models) and documents them.
    """

    name: str
    models: tuple[str, ...]
    context: int
    max_context: int
    alternatives: tuple[str, ...] = ()
    description: str = ""

    @property
    def primary(self) -> str:
        return self.models[0]

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "models": list(self.models),
            "alternatives": list(self.alternatives),
            "context": self.context,
            "max_context": self.max_context,
            "description": self.description,
        }


DEFAULT_TIERS: tuple[Tier, ...] = (
    Tier(
        "frontier",
        ("deepseek-r1:671b",),
        8192,
        32768,
        description="the full DeepSeek-R1: 8 x 80 GB (HGX H100/A100) and up",
    ),
    Tier(
        "large",
        ("deepseek-r1:70b",),
        8192,
        32768,
        ("llama3.3:70b",),
        "70B: 48 GB (2 x 24 GB, L40S, A100 80GB, H100/H200)",
    ),
    Tier(
        "medium",
        ("deepseek-r1:32b",),
        8192,
        32768,
        ("qwq:32b", "gemma3:27b"),
        "32B: one 24 GB-class card (RTX 3090/4090, A10G), A100 40GB",
    ),
    Tier(
        "small",
        ("deepseek-r1:14b",),
        8192,
        32768,
        ("gemma3:12b",),
        "14B: 12-16 GB (T4, RTX 3060 12GB, RTX 4080)",
    ),
    Tier(
        "compact",
        ("deepseek-r1:8b",),
        8192,
        32768,
        ("deepseek-r1:7b", "gemma3:4b"),
        "8B: 8-11 GB cards",
    ),
    Tier(
        "tiny",
        ("deepseek-r1:1.5b",),
        4096,
        32768,
        ("gemma3:1b",),
        "1.5B: small GPUs and CPU-only hosts",
    ),
)


@dataclass(frozen=True)
class Policy:
    """The catalog, the ladder and the arithmetic's knobs (documented in docs/tiers.md)."""

    catalog: Mapping[str, ModelSpec]
    tiers: tuple[Tier, ...]
    #: Per GPU, kept out of the fit: memory the driver reserves (300-600 MiB: an idle GPU's
    #: memory.used in nvidia-smi), the CUDA context, Ollama's minimum free memory (457 MiB) and
    #: its compute graph. Calibrated so that the slimmest 24 GB-class card (A10G, 23028 MiB) holds
    #: a 32B model at num_ctx 8192.
    gpu_overhead_mib: int = 1536
    kv_cache_type: str = "f16"
    num_parallel: int = 1
    min_compute_capability: str = "5.0"
    cpu_tier: str = "tiny"
    #: RAM a CPU host keeps for the OS and Ollama itself when a model runs on CPU.
    cpu_memory_reserve_mib: int = 2048
    #: RAM a unified-memory GPU (memory.total `[N/A]`: GB10 / DGX Spark) leaves to the OS, the
    #: CPU side of Ollama and the page cache; the rest of MemTotal sizes the GPU's tier.
    unified_memory_reserve_mib: int = 16384

    def tier(self, name: str) -> Tier:
        for tier in self.tiers:
            if tier.name == name:
                return tier
        raise KeyError(name)

    def model(self, name: str) -> ModelSpec:
        return self.catalog[name]

    def to_dict(self) -> dict[str, Any]:
        return {
            "catalog": {name: spec.to_dict() for name, spec in self.catalog.items()},
            "tiers": [tier.to_dict() for tier in self.tiers],
            "gpu_overhead_mib": self.gpu_overhead_mib,
            "kv_cache_type": self.kv_cache_type,
            "num_parallel": self.num_parallel,
            "min_compute_capability": self.min_compute_capability,
            "cpu_tier": self.cpu_tier,
            "cpu_memory_reserve_mib": self.cpu_memory_reserve_mib,
            "unified_memory_reserve_mib": self.unified_memory_reserve_mib,
        }


DEFAULT_POLICY = Policy(catalog=DEFAULT_CATALOG, tiers=DEFAULT_TIERS)

# ------------------------------------------------------------------------------ validation

_TIER_NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
_MODEL_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._/-]*(?::[a-z0-9][a-z0-9._-]*)?$", re.IGNORECASE)


def _integer(option: str, value: Any, minimum: int, maximum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise PolicyError(option, f"must be an integer, got {value!r}")
    if isinstance(value, str):
        if not value.strip().isdigit():
            raise PolicyError(option, f"must be an integer, got {value!r}")
        value = int(value.strip())
    if value < minimum or (maximum is not None and value > maximum):
        bounds = f">= {minimum}" if maximum is None else f"{minimum}-{maximum}"
        raise PolicyError(option, f"must be {bounds}, got {value}")
    return value


def _string_list(option: str, value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        raise PolicyError(option, f"must be a list of strings, got {value!r}")
    return tuple(v.strip() for v in value)


def _model_spec(option: str, name: str, data: Any, base: ModelSpec | None) -> ModelSpec:
    if not _MODEL_NAME_RE.match(name):
        raise PolicyError(option, f"{name!r} is not an Ollama model name (name:tag)")
    if not isinstance(data, Mapping):
        raise PolicyError(option, f"must be a mapping of model fields, got {data!r}")
    known = {
        "family",
        "parameters",
        "size_bytes",
        "size_gb",
        "size_mib",
        "layers",
        "kv_heads",
        "head_dim",
        "key_length",
        "value_length",
        "context_max",
    }
    unknown = sorted(set(data) - known)
    if unknown:
        raise PolicyError(
            option,
            "unknown field(s) {}; known: {}".format(", ".join(unknown), ", ".join(sorted(known))),
        )
    sizes = [k for k in ("size_bytes", "size_gb", "size_mib") if k in data]
    if len(sizes) > 1:
        raise PolicyError(option, f"give one of size_bytes, size_gb, size_mib, not {sizes}")
    values: dict[str, Any] = base.to_dict() if base else {}
    values.pop("size_mib", None)
    if sizes:
        key = sizes[0]
        raw = data[key]
        if isinstance(raw, bool) or not isinstance(raw, (int, float)) or raw <= 0:
            raise PolicyError(f"{option}.{key}", "must be a positive number")
        values["size_bytes"] = int(raw * {"size_bytes": 1, "size_gb": GB, "size_mib": MIB}[key])
    for key in ("layers", "kv_heads", "key_length", "value_length", "context_max"):
        if key in data:
            values[key] = _integer(f"{option}.{key}", data[key], 1)
    if "head_dim" in data:
        head_dim = _integer(option + ".head_dim", data["head_dim"], 1)
        for key in ("key_length", "value_length"):
            if key not in data:
                values[key] = head_dim
    parameters_default = name.partition(":")[2]
    values["family"] = str(data.get("family", values.get("family", family_of(name))))
    if values["family"] not in TEMPLATE_FAMILIES:
        raise PolicyError(
            option + ".family",
            "{!r} has no Modelfile template; one of {}".format(
                values["family"], ", ".join(TEMPLATE_FAMILIES)
            ),
        )
    values["parameters"] = str(data.get("parameters", values.get("parameters", parameters_default)))
    values["value_length"] = values.get("value_length") or values.get("key_length")
    missing = [
        k
        for k in ("size_bytes", "layers", "kv_heads", "key_length", "context_max")
        if k not in values
    ]
    if missing:
        raise PolicyError(
            option,
            "a new model needs {} (see docs/tiers.md: the GGUF's block_count, "
            "attention.head_count_kv, attention.key_length, context_length)".format(
                ", ".join(missing)
            ),
        )
    values["name"] = name
    return ModelSpec(**{k: values[k] for k in ModelSpec.__dataclass_fields__})


def _tier(option: str, data: Any, catalog: Mapping[str, ModelSpec]) -> Tier:
    if not isinstance(data, Mapping):
        raise PolicyError(option, "must be a mapping (name, models, context, max_context)")
    unknown = sorted(
        set(data) - {"name", "models", "alternatives", "context", "max_context", "description"}
    )
    if unknown:
        raise PolicyError(option, "unknown field(s) {}".format(", ".join(unknown)))
    name = data.get("name")
    if not isinstance(name, str) or not _TIER_NAME_RE.match(name):
        raise PolicyError(
            option + ".name",
            f"must match [a-z][a-z0-9_]* (it becomes group tier_<name>), got {name!r}",
        )
    models = _string_list(option + ".models", data.get("models", []))
    if not models:
        raise PolicyError(option + ".models", "needs at least one model")
    alternatives = _string_list(option + ".alternatives", data.get("alternatives", []))
    for model in models + alternatives:
        if model not in catalog:
            raise PolicyError(option, _unknown_model(model, catalog))
    context = _integer(option + ".context", data.get("context", 8192), 256, 10**7)
    max_context = _integer(option + ".max_context", data.get("max_context", context), 256, 10**7)
    if max_context < context:
        raise PolicyError(option + ".max_context", f"must be >= context ({context})")
    return Tier(name, models, context, max_context, alternatives, str(data.get("description", "")))


def _unknown_model(model: str, catalog: Mapping[str, ModelSpec]) -> str:
    known = ", ".join(sorted(catalog))
    return (
        f"model {model!r} is not in the catalog ({known}); "
        "add it under policy.catalog with its size and shape"
    )


def policy_from_config(data: Mapping[str, Any] | None, base: Policy = DEFAULT_POLICY) -> Policy:
    """Build a Policy from the plugin's `policy` option (or `scripts/gpu-tier --policy`).

    Keys: catalog (merged into the default catalog, field by field), tiers (replaces the
    ladder), tier_models ({tier: [models]}: pick alternatives), gpu_overhead_mib,
    kv_cache_type, num_parallel, min_compute_capability, cpu_tier, cpu_memory_reserve_mib,
    unified_memory_reserve_mib.
    Raises PolicyError naming the offending key.
    """
    if not data:
        return base
    if not isinstance(data, Mapping):
        raise PolicyError("policy", f"must be a mapping, got {data!r}")
    known = {
        "catalog",
        "tiers",
        "tier_models",
        "gpu_overhead_mib",
        "kv_cache_type",
        "num_parallel",
        "min_compute_capability",
        "cpu_tier",
        "cpu_memory_reserve_mib",
        "unified_memory_reserve_mib",
    }
    unknown = sorted(set(data) - known)
    if unknown:
        raise PolicyError(
            "policy",
            "unknown key(s) {}; known: {}".format(", ".join(unknown), ", ".join(sorted(known))),
        )
    catalog = dict(base.catalog)
    extra = data.get("catalog") or {}
    if not isinstance(extra, Mapping):
        raise PolicyError("policy.catalog", "must be a mapping of model name to fields")
    for name, fields in extra.items():
        catalog[str(name)] = _model_spec(
            f"policy.catalog[{name}]", str(name), fields, catalog.get(str(name))
        )

    tiers = base.tiers
    if "tiers" in data:
        raw = data["tiers"]
        if not isinstance(raw, (list, tuple)) or not raw:
            raise PolicyError("policy.tiers", "must be a non-empty list, largest tier first")
        tiers = tuple(_tier(f"policy.tiers[{i}]", t, catalog) for i, t in enumerate(raw))
    else:
        for tier in tiers:
            for model in tier.models + tier.alternatives:
                if model not in catalog:
                    raise PolicyError("policy.catalog", _unknown_model(model, catalog))
    names = [t.name for t in tiers]
    if len(set(names)) != len(names):
        raise PolicyError("policy.tiers", f"tier names repeat: {names}")

    tier_models = data.get("tier_models") or {}
    if not isinstance(tier_models, Mapping):
        raise PolicyError("policy.tier_models", "must map a tier name to a list of models")
    for tier_name, models in tier_models.items():
        option = f"policy.tier_models.{tier_name}"
        if tier_name not in names:
            raise PolicyError(option, "no such tier; tiers: {}".format(", ".join(names)))
        chosen = _string_list(option, models)
        if not chosen:
            raise PolicyError(option, "needs at least one model")
        for model in chosen:
            if model not in catalog:
                raise PolicyError(option, _unknown_model(model, catalog))
        tiers = tuple(replace(t, models=chosen) if t.name == tier_name else t for t in tiers)

    kv_cache_type = data.get("kv_cache_type", base.kv_cache_type)
    if kv_cache_type not in KV_BYTES:
        raise PolicyError(
            "policy.kv_cache_type",
            "must be one of {}, got {!r}".format(", ".join(KV_BYTES), kv_cache_type),
        )
    cc = str(data.get("min_compute_capability", base.min_compute_capability))
    if not re.match(r"^\d{1,2}\.\d$", cc):
        raise PolicyError("policy.min_compute_capability", f"must look like 5.0, got {cc!r}")
    cpu_tier = data.get("cpu_tier", base.cpu_tier if base.cpu_tier in names else names[-1])
    if cpu_tier not in names:
        raise PolicyError(
            "policy.cpu_tier", "no such tier {!r}; tiers: {}".format(cpu_tier, ", ".join(names))
        )
    return Policy(
        catalog=catalog,
        tiers=tiers,
        gpu_overhead_mib=_integer(
            "policy.gpu_overhead_mib", data.get("gpu_overhead_mib", base.gpu_overhead_mib), 0, 65536
        ),
        kv_cache_type=kv_cache_type,
        num_parallel=_integer(
            "policy.num_parallel", data.get("num_parallel", base.num_parallel), 1, 64
        ),
        min_compute_capability=cc,
        cpu_tier=cpu_tier,
        cpu_memory_reserve_mib=_integer(
            "policy.cpu_memory_reserve_mib",
            data.get("cpu_memory_reserve_mib", base.cpu_memory_reserve_mib),
            0,
        ),
        unified_memory_reserve_mib=_integer(
            "policy.unified_memory_reserve_mib",
            data.get("unified_memory_reserve_mib", base.unified_memory_reserve_mib),
            0,
        ),
    )


# ------------------------------------------------------------------------------ overrides

#: Inventory variables (group or host level) an operator sets to steer one host.
OVERRIDE_VARS = {
    "tier": "gpu_tier_pin",
    "models": "gpu_tier_models",
    "max_context": "gpu_tier_max_context",
    "exclude_gpus": "gpu_tier_exclude_gpus",
}


@dataclass(frozen=True)
class Overrides:
    tier: str | None = None
    models: tuple[str, ...] | None = None
    max_context: int | None = None
    exclude_gpus: tuple[str, ...] = ()

    @property
    def any(self) -> bool:
        return bool(self.tier or self.models or self.max_context or self.exclude_gpus)


def overrides_from_vars(variables: Mapping[str, Any], policy: Policy) -> Overrides:
    """Read gpu_tier_pin / gpu_tier_models / gpu_tier_max_context / gpu_tier_exclude_gpus."""
    names = [t.name for t in policy.tiers]
    tier = variables.get(OVERRIDE_VARS["tier"])
    if tier in ("", None):
        tier = None
    elif not isinstance(tier, str) or tier not in names:
        raise PolicyError(
            OVERRIDE_VARS["tier"],
            "{!r} is not a tier; use one of {}".format(tier, ", ".join(names)),
        )
    models = variables.get(OVERRIDE_VARS["models"])
    if models in ("", None, []):
        models = None
    else:
        models = _string_list(OVERRIDE_VARS["models"], models)
        for model in models:
            if model not in policy.catalog:
                raise PolicyError(OVERRIDE_VARS["models"], _unknown_model(model, policy.catalog))
    cap = variables.get(OVERRIDE_VARS["max_context"])
    cap = None if cap in ("", None) else _integer(OVERRIDE_VARS["max_context"], cap, 256, 10**7)
    exclude = variables.get(OVERRIDE_VARS["exclude_gpus"])
    if exclude in ("", None):
        exclude = ()
    else:
        if isinstance(exclude, (str, int)) and not isinstance(exclude, bool):
            exclude = [exclude]
        if not isinstance(exclude, (list, tuple)) or not all(
            isinstance(e, (str, int)) and not isinstance(e, bool) for e in exclude
        ):
            raise PolicyError(
                OVERRIDE_VARS["exclude_gpus"],
                f"must be a list of GPU indexes, UUIDs or PCI bus ids, got {exclude!r}",
            )
        exclude = tuple(str(e).strip() for e in exclude)
    return Overrides(tier, models, cap, exclude)


def gpu_matches(gpu: GpuDevice, selector: str) -> bool:
    selector = selector.strip()
    if selector.isdigit():
        return gpu.index == int(selector)
    if selector.upper().startswith(("GPU-", "MIG-")):
        return (gpu.uuid or "").lower() == selector.lower()
    return bool(gpu.pci_bus_id) and bus_key(gpu.pci_bus_id) == bus_key(selector)


def bus_key(address: str) -> str:
    """bus:device.function, lower case: 00000000:3B:00.0, 0000:3b:00.0 and 3b:00.0 compare equal."""
    return address.strip().lower()[-7:]
