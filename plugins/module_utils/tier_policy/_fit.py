# Copyright (c) localllm.fleet contributors
# Apache License 2.0 (see galaxy.yml)
"""The fit decision: which tier and context a set of GPUs (or the CPU) can hold, and why.

decide() walks the tier ladder with the arithmetic docs/tiers.md explains (weights + KV
cache + split allowance against usable memory) and returns a Decision carrying its reason
and the server settings it assumed. Pure standard library, Python 3.9+.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ._catalog import OVERRIDE_VARS, ModelSpec, Overrides, Policy, PolicyError, Tier

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


def describe_slots(slots: Sequence[GpuSlot]) -> str:
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
