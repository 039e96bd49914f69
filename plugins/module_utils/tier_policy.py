# Copyright (c) localllm.fleet contributors
# Apache License 2.0 (see galaxy.yml)
"""Tier policy: which model a host can serve, as data plus a little arithmetic.

The policy is a model catalog (size on disk, the shape that sizes the KV cache, context
limits) and an ordered ladder of tiers, largest first. A host gets the first tier whose
primary model fits its usable GPU memory:

    weights + KV cache(num_ctx) + split allowance  <=  sum(memory.total - gpu_overhead_mib)

with the KV cache from the model's shape (layers x KV heads x (key + value length) x bytes
per element x num_ctx x num_parallel). When no tier fits on GPU the host gets the CPU tier.
Every decision carries a one-line reason. docs/tiers.md explains the numbers.

The catalog lives here as Python data, not a YAML file: module_utils travel to managed hosts
without the collection's other files and without PyYAML, and a pull-mode host classifies
itself with this same code. Operators change it through the inventory plugin's `policy`
option (validated by `policy_from_config`). Pure standard library, Python 3.8+.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from fractions import Fraction
from typing import Any

from ansible_collections.localllm.fleet.plugins.module_utils.model_families import (
    TEMPLATE_FAMILIES,
    family_of,
)
from ansible_collections.localllm.fleet.plugins.module_utils.nvidia_smi import (
    MEMORY_ABSENT,
    MEMORY_REPORTED,
    MEMORY_UNIFIED,
    QUERY_COMMAND,
    STATUS_DRIVER_NOT_LOADED,
    STATUS_GARBAGE,
    STATUS_NO_DEVICES,
    STATUS_NOT_INSTALLED,
    STATUS_VERSION_MISMATCH,
    GpuDevice,
    PciDevice,
    ProbeReport,
    clip,
)
from ansible_collections.localllm.fleet.plugins.module_utils.ollama_release import (
    PINNED_VERSION,
    ReleaseError,
    driver_branch,
    driver_floor,
)

__all__ = [
    "DEFAULT_CATALOG",
    "DEFAULT_POLICY",
    "DEFAULT_TIERS",
    "OVERRIDE_VARS",
    "STATUS_CPU",
    "STATUS_DRIVER_NEEDED",
    "STATUS_GPU",
    "STATUS_UNREACHABLE",
    "Decision",
    "FitRefused",
    "GpuSlot",
    "HostPlan",
    "ModelPlan",
    "ModelSpec",
    "Overrides",
    "Policy",
    "PolicyError",
    "Tier",
    "classify",
    "decide",
    "gpu_memory_status",
    "overrides_from_vars",
    "policy_from_config",
    "unreachable_plan",
]

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


def _gpu_matches(gpu: GpuDevice, selector: str) -> bool:
    selector = selector.strip()
    if selector.isdigit():
        return gpu.index == int(selector)
    if selector.upper().startswith(("GPU-", "MIG-")):
        return (gpu.uuid or "").lower() == selector.lower()
    return bool(gpu.pci_bus_id) and _bus(gpu.pci_bus_id) == _bus(selector)


def _bus(address: str) -> str:
    """bus:device.function, lower case: 00000000:3B:00.0, 0000:3b:00.0 and 3b:00.0 compare equal."""
    return address.strip().lower()[-7:]


# ------------------------------------------------------------------------------ the decision


class FitRefused(PolicyError):
    """A pinned tier or model (gpu_tier_pin, gpu_tier_models) that this host cannot hold even at
    the tier's smallest context: the plan is refused, with the arithmetic, instead of a tier
    that would spill to the CPU. `option` names the variable that pinned it."""


@dataclass(frozen=True)
class GpuSlot:
    """A device the models may use: a whole GPU, or one MIG instance."""

    label: str
    memory_mib: int


@dataclass(frozen=True)
class ModelPlan:
    """One model for one host: the context it gets and what that needs."""

    name: str
    family: str
    parameters: str
    size_mib: int
    num_ctx: int
    need_mib: int
    fits: bool

    def to_var(self) -> dict[str, Any]:
        """An entry of `ollama_models` (`parameter_size`, as Ollama's details call it: the
        key `parameters` is the ollama_models role's Modelfile PARAMETERs)."""
        return {
            "name": self.name,
            "family": self.family,
            "parameter_size": self.parameters,
            "size_mib": self.size_mib,
            "num_ctx": self.num_ctx,
        }


#: The host variables that carry one decision's server settings to the ollama role (its
#: drop-in) and the ollama_models role (the Modelfiles): set once here, read there.
SERVICE_VARS = (
    "gpu_tier_num_parallel",
    "gpu_tier_kv_cache_type",
    "gpu_tier_context_length",
    "gpu_tier_max_loaded_models",
)


@dataclass(frozen=True)
class Decision:
    tier: str
    models: tuple[ModelPlan, ...]
    num_ctx: int
    placement: str  # "gpu", "cpu" or "unknown"
    usable_mib: int
    need_mib: int
    fits: bool
    pinned: bool
    reason: str
    #: The server settings the fit assumed (OLLAMA_KV_CACHE_TYPE, OLLAMA_NUM_PARALLEL).
    kv_cache_type: str = "f16"
    num_parallel: int = 1
    #: Models of the tier left out because they do not fit beside the first one.
    left_out: tuple[str, ...] = ()

    @property
    def context_length(self) -> int:
        """OLLAMA_CONTEXT_LENGTH: a model asked without num_ctx (a base, a client's own
        options-less request) gets the smallest context any of the host's models was fitted
        at, never Ollama's VRAM-based default (up to 256k on 48 GiB and more)."""
        return min(m.num_ctx for m in self.models)

    @property
    def max_loaded_models(self) -> int:
        """OLLAMA_MAX_LOADED_MODELS: every model of the host, which fit together by
        construction; Ollama's count-based eviction never needs to unload one of them."""
        return len(self.models)

    def service_vars(self) -> dict[str, Any]:
        """gpu_tier_num_parallel, _kv_cache_type, _context_length, _max_loaded_models."""
        values = (self.num_parallel, self.kv_cache_type, self.context_length)
        values += (self.max_loaded_models,)
        return {name: values[index] for index, name in enumerate(SERVICE_VARS)}


@dataclass(frozen=True)
class _Fit:
    fits: bool
    need_mib: int
    usable_mib: int
    weights_mib: int
    kv_mib: int
    split_mib: int


def _cache_type(policy: Policy, specs: Sequence[ModelSpec]) -> str:
    """OLLAMA_KV_CACHE_TYPE is one setting for the whole server, and a quantized cache needs
    flash attention: the policy's type only when every model of the host has it, else f16."""
    if all(spec.flash_attention for spec in specs):
        return policy.kv_cache_type
    return "f16"


def _fit(
    spec: ModelSpec, num_ctx: int, policy: Policy, slots: Sequence[GpuSlot], cache: str
) -> _Fit:
    """Ollama's placement: one GPU when the model fits there, else layers spread over all."""
    kv = spec.kv_cache_mib(num_ctx, policy.num_parallel, cache)
    single = spec.size_mib + kv
    usable = [max(0, s.memory_mib - policy.gpu_overhead_mib) for s in slots]
    if not usable:
        return _Fit(False, single, 0, spec.size_mib, kv, 0)
    if single <= max(usable):
        return _Fit(True, single, max(usable), spec.size_mib, kv, 0)
    used = [u for u in usable if u > 0]
    split = max(0, len(used) - 1) * spec.layer_mib
    need = single + split
    return _Fit(need <= sum(used), need, sum(used), spec.size_mib, kv, split)


def _fit_together(
    entries: Sequence[tuple[ModelSpec, int]], policy: Policy, slots: Sequence[GpuSlot], cache: str
) -> _Fit:
    """Several models loaded at once: each must fit, and all of them in the usable total (Ollama
    loads another model only when it fits beside those loaded, and otherwise unloads one)."""
    fits = [_fit(spec, ctx, policy, slots, cache) for spec, ctx in entries]
    if len(fits) == 1:
        return fits[0]
    total = sum(max(0, s.memory_mib - policy.gpu_overhead_mib) for s in slots)
    need = sum(f.need_mib for f in fits)
    return _Fit(
        all(f.fits for f in fits) and need <= total,
        need,
        total,
        sum(f.weights_mib for f in fits),
        sum(f.kv_mib for f in fits),
        sum(f.split_mib for f in fits),
    )


def _grow(spec: ModelSpec, base: int, limit: int, fits) -> int:
    """The largest num_ctx from base, doubling (then the limit itself), that still fits."""
    best = base
    candidate = base * 2
    while candidate <= limit and fits(candidate):
        best = candidate
        candidate *= 2
    if best < limit < candidate and fits(limit):
        best = limit
    return best


def _context_bounds(tier: Tier, spec: ModelSpec, cap: int | None) -> tuple[int, int]:
    limit = min(tier.max_context, spec.context_max)
    if cap is not None:
        limit = min(limit, cap)
    return min(tier.context, limit), limit


def _cpu_need(spec: ModelSpec, num_ctx: int, policy: Policy, cache: str) -> int:
    return spec.size_mib + spec.kv_cache_mib(num_ctx, policy.num_parallel, cache)


def _describe_slots(slots: Sequence[GpuSlot]) -> str:
    counts: dict[str, int] = {}
    for slot in slots:
        counts[slot.label] = counts.get(slot.label, 0) + 1
    return " + ".join(f"{n} x {label}" for label, n in counts.items())


def _fit_text(spec: ModelSpec, num_ctx: int, fit: _Fit) -> str:
    parts = f"weights {fit.weights_mib} + KV cache {fit.kv_mib}"
    if fit.split_mib:
        parts += f" + split allowance {fit.split_mib}"
    return f"{spec.name} at num_ctx {num_ctx} needs {fit.need_mib} MiB ({parts})"


def _pin_option(overrides: Overrides) -> str:
    if overrides.models:
        return OVERRIDE_VARS["models"]
    return OVERRIDE_VARS["tier"]


def _refuse(overrides: Overrides, prefix: str, what: str) -> FitRefused:
    option = _pin_option(overrides)
    value = ",".join(overrides.models) if overrides.models else overrides.tier
    return FitRefused(
        option,
        f"{option}={value} refused: {prefix}{what}; pin a smaller tier or other models, "
        f"cap the context with {OVERRIDE_VARS['max_context']}, or remove the pin",
    )


def _plan_entries(
    policy: Policy,
    tier: Tier,
    specs: Sequence[ModelSpec],
    cap: int | None,
    fits_together,
) -> tuple[list[tuple[ModelSpec, int]], list[tuple[ModelSpec, int]]]:
    """(kept, left out): the first model at its base context, then each further one at its base
    context while everything still fits together."""
    primary = specs[0]
    kept = [(primary, _context_bounds(tier, primary, cap)[0])]
    left: list[tuple[ModelSpec, int]] = []
    for spec in specs[1:]:
        entry = (spec, _context_bounds(tier, spec, cap)[0])
        if fits_together([*kept, entry]):
            kept.append(entry)
        else:
            left.append(entry)
    return kept, left


def decide(  # noqa: PLR0917 - policy, hardware, overrides: the natural call reads positionally
    policy: Policy,
    slots: Sequence[GpuSlot],
    overrides: Overrides | None = None,
    memory_mib: int | None = None,
    context: str = "",
    placement: str | None = None,
) -> Decision:
    """The tier and models for a host whose usable GPUs are `slots` (empty: CPU only).

    `context` is the hardware summary the reason starts with (e.g. "8 x NVIDIA H100 80GB HBM3,
    NVSwitch"). The tier's first model decides the tier and is fitted first; every further
    model must fit beside it (all are loaded at once, so that none has to be unloaded for
    another), or it is left out and the reason says so. A pinned tier or model that does not
    fit even at the tier's context raises FitRefused with the arithmetic. placement="unknown"
    (a pinned tier on a host whose memory could not be read) skips the fit: num_ctx is the
    tier's context.
    """
    overrides = overrides or Overrides()
    cap = overrides.max_context
    overhead_text = f"{policy.gpu_overhead_mib} MiB/GPU reserved"
    prefix = context + ": " if context else ""
    cap_text = (
        " (num_ctx capped at {} by {})".format(cap, OVERRIDE_VARS["max_context"]) if cap else ""
    )

    def tier_specs(tier: Tier) -> list[ModelSpec]:
        return [policy.model(name) for name in overrides.models or tier.models]

    chosen: Tier | None = None
    pinned = bool(overrides.tier)
    skipped: list[str] = []
    if overrides.tier:
        chosen = policy.tier(overrides.tier)
    elif slots:
        for tier in policy.tiers:
            specs = tier_specs(tier)
            base, _ = _context_bounds(tier, specs[0], cap)
            fit = _fit(specs[0], base, policy, slots, _cache_type(policy, specs))
            if fit.fits:
                chosen = tier
                break
            skipped.append(f"{tier.name} ({specs[0].name}) needs {fit.need_mib} MiB")

    if placement is None:
        placement = "gpu" if chosen is not None and slots else "cpu"
    if chosen is None:
        chosen = policy.tier(policy.cpu_tier)
    specs = tier_specs(chosen)
    cache = _cache_type(policy, specs)
    primary = specs[0]
    pinned = pinned or bool(overrides.models)
    cache_text = (
        f"; KV cache f16, not {policy.kv_cache_type}: "
        + ", ".join(s.name for s in specs if not s.flash_attention)
        + " cannot use flash attention"
        if cache != policy.kv_cache_type
        else ""
    )

    plans: list[ModelPlan] = []
    left_text: list[str] = []
    notes: list[str] = []
    if overrides.tier:
        notes.append("tier pinned by {}={}".format(OVERRIDE_VARS["tier"], chosen.name))
    if overrides.models:
        notes.append("models pinned by {}".format(OVERRIDE_VARS["models"]))

    def plan(spec: ModelSpec, num_ctx: int, need: int, fits: bool) -> ModelPlan:
        return ModelPlan(
            spec.name, spec.family, spec.parameters, spec.size_mib, num_ctx, need, fits
        )

    if placement == "gpu":

        def together(entries: Sequence[tuple[ModelSpec, int]]) -> bool:
            return _fit_together(entries, policy, slots, cache).fits

        base, limit = _context_bounds(chosen, primary, cap)
        first = _fit(primary, base, policy, slots, cache)
        if not first.fits:  # only a pin gets here: the ladder chose a tier that fits
            raise _refuse(
                overrides,
                prefix,
                f"{_fit_text(primary, base, first)}, more than the {first.usable_mib} MiB "
                f"usable ({overhead_text})",
            )
        kept, left = _plan_entries(policy, chosen, specs, cap, together)
        others = kept[1:]
        for spec, ctx in left:
            free = first.usable_mib - _fit_together(kept, policy, slots, cache).need_mib
            need = _fit(spec, ctx, policy, slots, cache).need_mib
            text = (
                f"{spec.name} (needs {need} MiB at num_ctx {ctx}, {max(free, 0)} MiB left "
                f"beside {primary.name})"
            )
            if overrides.models:
                raise _refuse(overrides, prefix, f"{text} does not fit beside the first model")
            left_text.append(text)
        num_ctx = _grow(primary, base, limit, lambda c: together([(primary, c), *others]))
        primary_fit = _fit(primary, num_ctx, policy, slots, cache)
        plans.append(plan(primary, num_ctx, primary_fit.need_mib, True))
        for spec, ctx in others:
            plans.append(plan(spec, ctx, _fit(spec, ctx, policy, slots, cache).need_mib, True))
        usable = primary_fit.usable_mib
        text = (
            f"{prefix}{_fit_text(primary, num_ctx, primary_fit)} of {usable} MiB usable "
            f"({overhead_text}){cap_text}"
        )
        if others:
            total = _fit_together([(primary, num_ctx), *others], policy, slots, cache)
            text += "; with {} beside it: {} of {} MiB".format(
                ", ".join(f"{s.name} at num_ctx {c}" for s, c in others),
                total.need_mib,
                total.usable_mib,
            )
        if skipped:
            text += "; next tier up: " + skipped[-1]
    elif placement == "unknown":
        for spec in specs:
            base, _ = _context_bounds(chosen, spec, cap)
            plans.append(plan(spec, base, _cpu_need(spec, base, policy, cache), True))
        usable = 0
        text = (
            f"{prefix}{primary.name} at num_ctx {plans[0].num_ctx} needs {plans[0].need_mib} MiB "
            f"(fit not checked: memory unknown){cap_text}"
        )
    else:
        room = None if memory_mib is None else memory_mib - policy.cpu_memory_reserve_mib

        def in_ram(entries: Sequence[tuple[ModelSpec, int]]) -> bool:
            need = sum(_cpu_need(s, c, policy, cache) for s, c in entries)
            return room is None or need <= room

        kept, left = _plan_entries(policy, chosen, specs, cap, in_ram)
        base = kept[0][1]
        need = _cpu_need(primary, base, policy, cache)
        primary_fits = room is None or need <= room
        if not primary_fits and pinned:
            raise _refuse(
                overrides,
                prefix,
                f"{primary.name} on CPU at num_ctx {base} needs {need} MiB + "
                f"{policy.cpu_memory_reserve_mib} MiB reserve, more than the {memory_mib} "
                "MiB of RAM",
            )
        if not primary_fits:  # the CPU tier: nothing is smaller, so it stays, flagged
            kept, left = [(primary, base)], []
        for spec, ctx in left:
            text = f"{spec.name} (needs {_cpu_need(spec, ctx, policy, cache)} MiB beside it in RAM)"
            if overrides.models:
                raise _refuse(overrides, prefix, f"{text} does not fit beside the first model")
            left_text.append(text)
        for index, (spec, ctx) in enumerate(kept):
            fits = primary_fits if index == 0 else True
            plans.append(plan(spec, ctx, _cpu_need(spec, ctx, policy, cache), fits))
        usable = memory_mib or 0
        why = (
            "no usable GPU"
            if not slots
            else "no tier fits the GPUs ({})".format(", ".join(skipped))
        )
        ram = f"{memory_mib} MiB RAM" if memory_mib is not None else "RAM unknown"
        text = (
            f"{prefix}{why}: {primary.name} on CPU at num_ctx {base} needs "
            f"{need} MiB + {policy.cpu_memory_reserve_mib} MiB reserve of {ram}{cap_text}"
        )
        if not primary_fits:
            text += f"; DOES NOT FIT in RAM: {primary.name}"
    if left_text:
        text += "; left out (no room beside the first model): " + "; ".join(left_text)
    text += cache_text
    if notes:
        text += " [{}]".format("; ".join(notes))
    misfits = [p.name for p in plans if not p.fits]
    return Decision(
        tier=chosen.name,
        models=tuple(plans),
        num_ctx=plans[0].num_ctx,
        placement=placement,
        usable_mib=usable,
        need_mib=plans[0].need_mib,
        fits=not misfits,
        pinned=pinned,
        reason=f"tier {chosen.name}: {text}",
        kv_cache_type=cache,
        num_parallel=policy.num_parallel,
        left_out=tuple(item.split(" (")[0] for item in left_text),
    )


# ------------------------------------------------------------------------------ host classification

STATUS_GPU = "gpu"  # models on GPU
STATUS_CPU = "cpu"  # models on CPU (no usable GPU)
STATUS_DRIVER_NEEDED = "driver_needed"  # NVIDIA GPUs on PCI, no working driver: no tier yet
STATUS_UNREACHABLE = "unreachable"  # could not probe or read the host: no tier


@dataclass(frozen=True)
class HostPlan:
    """The classification of one host: what the inventory plugin turns into vars and groups."""

    status: str
    reason: str
    decision: Decision | None = None
    devices: tuple[dict[str, Any], ...] = ()
    gpu_count: int | None = None
    gpu_memory_mib_total: int | None = None
    nvswitch: bool | None = None
    cpu_count: int | None = None
    memory_mib: int | None = None
    warnings: tuple[str, ...] = field(default_factory=tuple)
    # A driver is installed but nvidia-smi cannot read the GPUs (not loaded, mismatch, no
    # devices): the host needs the driver fixed AND could not be read, so it is in both groups.
    driver_failing: bool = False

    @property
    def tier(self) -> str | None:
        return self.decision.tier if self.decision else None

    @property
    def unreadable(self) -> bool:
        """Whether the host could not be read (probe failed, or the driver cannot read the
        GPUs): such a host is in gpu_unreachable and its probe is not worth caching."""
        return self.status == STATUS_UNREACHABLE or self.driver_failing

    @property
    def groups(self) -> list[str]:
        groups = {
            STATUS_GPU: ["gpu"],
            STATUS_CPU: ["cpu"],
            STATUS_DRIVER_NEEDED: ["gpu", "gpu_driver_needed"],
            STATUS_UNREACHABLE: ["gpu_unreachable"],
        }[self.status]
        if self.driver_failing:
            groups.append("gpu_unreachable")
        if self.decision:
            groups.append("tier_" + self.decision.tier)
        return groups

    def to_vars(self) -> dict[str, Any]:
        """The host variables (names documented in docs/inventory.md)."""
        decision = self.decision
        return {
            "gpu_devices": [dict(d) for d in self.devices],
            "gpu_count": self.gpu_count,
            "gpu_memory_mib_total": self.gpu_memory_mib_total,
            "gpu_nvswitch": self.nvswitch,
            "gpu_tier": decision.tier if decision else None,
            "gpu_tier_reason": self.reason,
            "gpu_tier_num_ctx": decision.num_ctx if decision else None,
            **(decision.service_vars() if decision else dict.fromkeys(SERVICE_VARS)),
            "gpu_probe_status": self.status,
            # None, not []: a role must not read "no models" (and prune) from an unread host.
            "ollama_models": [m.to_var() for m in decision.models] if decision else None,
            "host_cpu_count": self.cpu_count,
            "host_memory_mib": self.memory_mib,
        }

    def to_json(self) -> dict[str, Any]:
        """The shape scripts/gpu-tier prints."""
        decision = self.decision
        return {
            "gpus": [
                {"name": d.get("name"), "memory_mib": d.get("memory_mib")} for d in self.devices
            ],
            "gpu_count": self.gpu_count,
            "gpu_memory_mib_total": self.gpu_memory_mib_total,
            "gpu_nvswitch": self.nvswitch,
            "status": self.status,
            "tier": decision.tier if decision else None,
            "models": [m.name for m in decision.models] if decision else [],
            "num_ctx": decision.num_ctx if decision else None,
            "left_out": list(decision.left_out) if decision else [],
            "service": decision.service_vars() if decision else None,
            "reason": self.reason,
            "error": None if self.status in (STATUS_GPU, STATUS_CPU) else self.reason,
        }


def unreachable_plan(
    reason: str, policy: Policy = DEFAULT_POLICY, overrides: Overrides | None = None, **facts: Any
) -> HostPlan:
    """A host that could not be read: no tier, unless the operator pinned one (gpu_tier_pin).

    A pinned host stays in gpu_unreachable (nothing was verified) but gets the pinned tier
    and models, so that an operator can serve hosts the probe cannot reach.
    """
    if overrides is not None and overrides.tier:
        decision = decide(policy, (), overrides, None, "not read: " + reason, placement="unknown")
        return HostPlan(STATUS_UNREACHABLE, decision.reason, decision, **facts)
    return HostPlan(STATUS_UNREACHABLE, reason, **facts)


_ACTIONS = {
    STATUS_NOT_INSTALLED: "no NVIDIA driver (nvidia-smi not found): install it "
    "(playbooks/drivers.yml), then refresh the inventory",
    STATUS_DRIVER_NOT_LOADED: "the NVIDIA driver is not loaded (nvidia-smi cannot communicate "
    "with it): check `dmesg | grep -i nvidia`, nouveau, Secure Boot module signing "
    "(`mokutil --sb-state`), or reboot after the install",
    STATUS_VERSION_MISMATCH: "the loaded kernel module and the user-space library differ (driver "
    "updated without a reboot): reboot the host",
    STATUS_NO_DEVICES: "the driver sees none of them: check `dmesg` for Xid / 'fallen off the bus' "
    "errors and that this driver branch supports the GPU",
}


def _pci_summary(devices: Iterable[PciDevice]) -> str:
    counts: dict[str, int] = {}
    for device in devices:
        counts[device.description] = counts.get(device.description, 0) + 1
    return ", ".join(f"{n} x {name}" for name, n in counts.items())


def _cc_tuple(text: str) -> tuple[int, int]:
    major, minor = text.split(".")
    return int(major), int(minor)


def classify(
    report: ProbeReport,
    policy: Policy = DEFAULT_POLICY,
    overrides: Overrides | None = None,
    ollama_version: str | None = PINNED_VERSION,
) -> HostPlan:
    """Turn what the probe saw into a HostPlan. Never guesses a tier for a host it cannot read.

    `ollama_version` is the release the host will run (its inventory's ollama_version): a GPU
    whose driver is older than that release needs (ollama_release.DRIVER_FLOORS) does not
    count, and a host left with no GPU that way needs its driver upgraded (driver_needed),
    not a tier. None skips that check. Raises FitRefused for a pin the host cannot hold.
    """
    overrides = overrides or Overrides()
    if ollama_version is not None:
        try:
            driver_floor(ollama_version)
        except ReleaseError as error:
            raise PolicyError("ollama_version", str(error)) from None
    smi = report.nvidia_smi
    pci = report.pci
    nvswitch = report.nvswitch if (smi.ok or pci.available) else None
    common = {"cpu_count": report.cpu_count, "memory_mib": report.memory_mib}

    if smi.ok:
        return _classify_gpus(report, policy, overrides, nvswitch, common, ollama_version)

    if smi.status == STATUS_GARBAGE:
        return HostPlan(
            STATUS_UNREACHABLE,
            f"nvidia-smi output is not readable: {smi.message}",
            **common,
        )
    smi_text = "nvidia-smi: {}".format(
        "not installed"
        if smi.status == STATUS_NOT_INSTALLED
        else clip(smi.message or f"exit {smi.rc}", 140)
    )
    if pci.available and pci.gpus:
        action = _ACTIONS.get(
            smi.status,
            f"nvidia-smi failed (exit {smi.rc}): {clip(smi.message, 120)}; fix the driver, "
            "then refresh the inventory",
        )
        devices = tuple(d.as_gpu_device() for d in pci.gpus)
        return HostPlan(
            STATUS_DRIVER_NEEDED,
            "no tier until the driver works: {} NVIDIA GPU(s) on PCI ({}){} but {}".format(
                len(pci.gpus),
                _pci_summary(pci.gpus),
                f" with {len(pci.nvswitches)} NVSwitch" if pci.nvswitches else "",
                action,
            ),
            devices=devices,
            gpu_count=len(pci.gpus),
            gpu_memory_mib_total=None,
            nvswitch=nvswitch,
            driver_failing=smi.status != STATUS_NOT_INSTALLED,
            **common,
        )
    if pci.available:
        detail = f"no NVIDIA GPU on the PCI bus ({pci.source})"
        if smi.status != STATUS_NOT_INSTALLED:
            detail += f", {smi_text}"
        decision = decide(policy, (), overrides, report.memory_mib, detail)
        return HostPlan(
            STATUS_CPU,
            decision.reason,
            decision,
            (),
            0,
            0,
            nvswitch,
            warnings=_fit_warnings(decision),
            **common,
        )
    return unreachable_plan(
        "cannot tell whether this host has GPUs: {}, and the PCI bus could not be listed ({}); "
        "install pciutils, fix the driver, or pin a tier with {}".format(
            smi_text, pci.error, OVERRIDE_VARS["tier"]
        ),
        policy,
        overrides,
        **common,
    )


def _fit_warnings(decision: Decision) -> tuple[str, ...]:
    if decision.fits:
        return ()
    return (
        "{}: {}".format(
            "pinned choice does not fit" if decision.pinned else "does not fit", decision.reason
        ),
    )


#: GpuDevice.memory_status values the tier side reads (the nvidia-smi parser sets them: see
#: gpu_memory_status). A GPU with no MiB figure is sized from the host's RAM only when it is
#: "unified"; every other reason leaves the host unread.


def gpu_memory_status(gpu: GpuDevice) -> str:
    """Why `gpu` has (no) memory figure: its `memory_status` as the nvidia-smi parser records it
    (reported, unified, unsupported, error, absent); "unknown" for a GPU record without that
    field and without a figure."""
    status = getattr(gpu, "memory_status", None)
    if status == MEMORY_REPORTED and gpu.memory_mib is None:
        return "unknown"  # a record that says it has a figure and has none
    if isinstance(status, str) and status:
        return status
    return MEMORY_REPORTED if gpu.memory_mib is not None else "unknown"


def _unsized_reason(gpu: GpuDevice, status: str, count: int) -> str:
    pin = "pin a tier with {} or exclude it with {}".format(
        OVERRIDE_VARS["tier"], OVERRIDE_VARS["exclude_gpus"]
    )
    if status == MEMORY_ABSENT:
        return (
            f"{count} GPU(s) counted, memory unknown: the nvidia-smi query has no memory.total "
            f"column; query it too (the probe's query: {QUERY_COMMAND}), or {pin}"
        )
    return "GPU {} ({}) reports {}: its memory cannot be sized; {}".format(
        gpu.index, gpu.name, "; ".join(gpu.notes) or "no memory.total", pin
    )


def _driver_texts(old: Sequence[tuple[GpuDevice, int, int]], ollama_version: str) -> list[str]:
    """One line per kind of GPU whose driver is too old (8 identical GPUs: one line)."""
    groups: dict[tuple[Any, ...], list[int]] = {}
    for gpu, branch, floor in old:
        key = (gpu.name, gpu.compute_cap, gpu.driver_version, branch, floor)
        groups.setdefault(key, []).append(gpu.index)
    texts = []
    for (name, compute_cap, version, branch, floor), indexes in groups.items():
        capability = f", compute capability {compute_cap}" if compute_cap else ""
        which = ", ".join(str(i) for i in indexes)
        texts.append(
            f"GPU {which} ({name}{capability}) {'has' if len(indexes) == 1 else 'have'} driver "
            f"{version} (branch {branch}); Ollama {ollama_version} needs {floor} or newer"
        )
    return texts


def _classify_gpus(  # noqa: PLR0917 - the probe, the policy and what classify worked out
    report: ProbeReport,
    policy: Policy,
    overrides: Overrides,
    nvswitch: bool | None,
    common: dict[str, Any],
    ollama_version: str | None = PINNED_VERSION,
) -> HostPlan:
    smi = report.nvidia_smi
    gpus = smi.gpus
    pci_by_bus = {_bus(d.address): d for d in report.pci.gpus}
    devices = tuple(_smi_gpu_entry(g, pci_by_bus) for g in gpus)
    warnings: list[str] = []
    if report.pci.available and report.pci.source == "lspci" and len(report.pci.gpus) > len(gpus):
        warnings.append(
            f"lspci lists {len(report.pci.gpus)} NVIDIA GPU(s) but nvidia-smi only {len(gpus)}: "
            "check the missing ones (`nvidia-smi -q`, dmesg)"
        )
    memories = [g.memory_mib for g in gpus]
    total = sum(m for m in memories if m is not None) if None not in memories else None
    facts = {
        "devices": devices,
        "gpu_count": len(gpus),
        "gpu_memory_mib_total": total,
        "nvswitch": nvswitch,
    }

    lost = [
        bus
        for bus in smi.lost_gpus
        if not any(_bus(bus) == _bus(e) for e in overrides.exclude_gpus)
    ]
    if lost:
        problems = [p for p in smi.problems if any(_bus(b) in p.lower() for b in lost)] or list(
            smi.problems
        )
        return HostPlan(STATUS_UNREACHABLE, "; ".join(problems), **facts, **common)

    min_cc = _cc_tuple(policy.min_compute_capability)
    # Without compute_cap or bus ids (a pasted legacy query), lspci's chip names still tell
    # the generation when every GPU on the bus is of one.
    bus_architectures = {d.architecture for d in report.pci.gpus}
    bus_architecture = bus_architectures.pop() if len(bus_architectures) == 1 else None
    excluded: list[str] = []
    too_old: list[tuple[GpuDevice, int, int]] = []
    slots: list[GpuSlot] = []
    mig_slots: list[GpuSlot] = []
    unified: list[GpuDevice] = []
    unknown_memory: list[int] = []
    for gpu in gpus:
        if any(_gpu_matches(gpu, selector) for selector in overrides.exclude_gpus):
            excluded.append(
                "GPU {} excluded by {}".format(gpu.index, OVERRIDE_VARS["exclude_gpus"])
            )
            continue
        if gpu.compute_cap and _cc_tuple(gpu.compute_cap) < min_cc:
            excluded.append(
                f"GPU {gpu.index} ({gpu.name}) has compute capability {gpu.compute_cap} < "
                f"{policy.min_compute_capability} (Ollama cannot use it)"
            )
            continue
        architecture = devices[gpus.index(gpu)]["architecture"] or bus_architecture
        floor = (
            driver_floor(ollama_version, gpu.compute_cap, architecture) if ollama_version else None
        )
        branch = driver_branch(gpu.driver_version)
        if floor is not None and branch is not None and branch < floor:
            # Ollama filters such a GPU (discover/cuda_compat.go) and serves on the CPU.
            too_old.append((gpu, branch, floor))
            continue
        if gpu.memory_mib is None:
            status = gpu_memory_status(gpu)
            if status == MEMORY_UNIFIED:
                unified.append(gpu)
                continue
            if overrides.tier:
                unknown_memory.append(gpu.index)
                excluded.append(f"GPU {gpu.index} memory unknown")
                continue
            return HostPlan(
                STATUS_UNREACHABLE, _unsized_reason(gpu, status, len(gpus)), **facts, **common
            )
        if gpu.mig_enabled:
            sizes = [m.memory_mib for m in gpu.mig_devices if m.memory_mib]
            if sizes:
                mig_slots.append(GpuSlot(f"{gpu.name} MIG {max(sizes)} MiB", max(sizes)))
            excluded.append(
                f"GPU {gpu.index} in MIG mode ({len(gpu.mig_devices)} instance(s); "
                "one CUDA process uses one)"
            )
            continue
        slots.append(GpuSlot(gpu.name, gpu.memory_mib))
    if mig_slots:
        # A process (Ollama) enumerates a single MIG instance: count the largest one, once.
        slots.append(max(mig_slots, key=lambda s: s.memory_mib))
    if unified and report.memory_mib is None and overrides.tier:
        # The operator's pin decides; the shared memory cannot be sized without MemTotal.
        for gpu in unified:
            unknown_memory.append(gpu.index)
            excluded.append(f"GPU {gpu.index} memory unknown (unified, MemTotal unread)")
        unified = []
    if unified:
        gpu = unified[0]
        if report.memory_mib is None:
            return HostPlan(
                STATUS_UNREACHABLE,
                f"GPU {gpu.index} ({gpu.name}) shares the host's memory (memory.total [N/A]) "
                "but MemTotal could not be read to size it; pin a tier with "
                f"{OVERRIDE_VARS['tier']}",
                **facts,
                **common,
            )
        # The GPUs share one pool of RAM: it counts once, whatever the number of GPUs.
        shared = max(report.memory_mib - policy.unified_memory_reserve_mib, 0)
        slots.append(GpuSlot(gpu.name, shared))
        excluded.append(
            "GPU {} sized from unified memory: {} MiB RAM - {} MiB unified_memory_reserve_mib "
            "= {} MiB".format(
                ", ".join(str(g.index) for g in unified),
                report.memory_mib,
                policy.unified_memory_reserve_mib,
                shared,
            )
        )
    driver_texts = _driver_texts(too_old, str(ollama_version))
    if too_old and not slots and not unknown_memory:
        return HostPlan(
            STATUS_DRIVER_NEEDED,
            "no tier until the driver is upgraded: {}; Ollama would leave the GPU(s) out and "
            "run on the CPU. Install a newer branch (playbooks/drivers.yml with "
            "nvidia_driver_branch at or above it), then refresh the inventory".format(
                "; ".join(driver_texts)
            ),
            **facts,
            **common,
        )
    for text in driver_texts:
        excluded.append(f"{text}: left out")
        warnings.append(f"{text}: Ollama leaves it out; upgrade the driver")

    summary = _describe_slots([GpuSlot(g.name, g.memory_mib or 0) for g in gpus])
    summary += " ({} MiB{})".format(
        total if total is not None else "?", ", NVSwitch" if nvswitch else ""
    )
    if excluded:
        summary += " [{}]".format("; ".join(excluded))
    placement = "unknown" if unknown_memory and not slots else None
    decision = decide(policy, slots, overrides, report.memory_mib, summary, placement)
    status = STATUS_CPU if decision.placement == "cpu" else STATUS_GPU
    warnings.extend(_fit_warnings(decision))
    return HostPlan(status, decision.reason, decision, warnings=tuple(warnings), **facts, **common)


def _smi_gpu_entry(gpu: GpuDevice, pci_by_bus: Mapping[str, PciDevice]) -> dict[str, Any]:
    entry = gpu.to_dict()
    device = pci_by_bus.get(_bus(gpu.pci_bus_id)) if gpu.pci_bus_id else None
    entry["pci_device_id"] = device.device_id if device else None
    if entry["architecture"] is None and device is not None:
        entry["architecture"] = device.architecture  # old drivers lack compute_cap
    return entry
