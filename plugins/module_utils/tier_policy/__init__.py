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

The package's parts, one concern each. The collection's own modules and plugins import a
name from its part; scripts, filters and other callers import it from here (the
`module_utils.tier_policy` path of the single-file module before the split):

    _catalog.py    the catalog, the tiers and the policy; validation of the `policy`
                   option and of a host's override variables
    _fit.py        the fit decision: decide() -> Decision (tier, models, context, reason)
    _classify.py   host classification: a probe report -> HostPlan (status, vars, groups)

The catalog lives here as Python data, not a YAML file: module_utils travel to managed hosts
without the collection's other files and without PyYAML, and a pull-mode host classifies
itself with this same code. Operators change it through the inventory plugin's `policy`
option (validated by `policy_from_config`). Pure standard library, Python 3.9+.
"""

from __future__ import annotations

from ._catalog import (
    DEFAULT_CATALOG,
    DEFAULT_POLICY,
    DEFAULT_TIERS,
    OVERRIDE_VARS,
    ModelSpec,
    Overrides,
    Policy,
    PolicyError,
    Tier,
    overrides_from_vars,
    policy_from_config,
)
from ._classify import (
    STATUS_CPU,
    STATUS_DRIVER_NEEDED,
    STATUS_GPU,
    STATUS_UNREACHABLE,
    HostPlan,
    classify,
    gpu_memory_status,
    unreachable_plan,
)
from ._fit import SERVICE_VARS, Decision, FitRefused, GpuSlot, ModelPlan, decide

__all__ = [
    "DEFAULT_CATALOG",
    "DEFAULT_POLICY",
    "DEFAULT_TIERS",
    "OVERRIDE_VARS",
    "SERVICE_VARS",
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
