# Copyright (c) localllm.fleet contributors
# Apache License 2.0 (see galaxy.yml)
"""A host classifying itself: the gpu_tier inventory plugin's decision, made on the host.

Pull mode (playbooks/pull-converge.yml, run by ansible-pull on each host) has no controller
to probe the fleet over SSH. The host runs the plugin's own probe (nvidia_smi.PROBE_SCRIPT)
locally and this module turns its output into the same variables and groups the plugin sets
(tier_policy.HostPlan.to_vars / .groups), with the same policy, overrides and Ollama release.
Nothing is decided here that tier_policy does not decide. Pure standard library, Python 3.8+.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ansible_collections.localllm.fleet.plugins.module_utils.nvidia_smi import (
    ProbeError,
    parse_probe_output,
)
from ansible_collections.localllm.fleet.plugins.module_utils.tier_policy._catalog import (
    OVERRIDE_VARS,
    overrides_from_vars,
    policy_from_config,
)
from ansible_collections.localllm.fleet.plugins.module_utils.tier_policy._classify import (
    classify,
    unreachable_plan,
)

__all__ = ["EXTRA_PATHS", "local_plan", "probe_path"]

#: Where nvidia-smi and lspci live when a service's PATH lacks the sbin directories.
EXTRA_PATHS = ("/usr/sbin", "/usr/local/sbin", "/usr/local/bin", "/sbin")


def probe_path(current: str | None) -> str:
    """PATH for the probe: the caller's, then the directories nvidia-smi and lspci use."""
    parts = [p for p in (current or "/usr/bin:/bin").split(":") if p]
    return ":".join(parts + [p for p in EXTRA_PATHS if p not in parts])


def local_plan(
    output: str,
    policy: Mapping[str, Any] | None = None,
    overrides: Mapping[str, Any] | None = None,
    ollama_version: str | None = None,
) -> dict[str, Any]:
    """The plan for this host from the probe's output.

    `policy` is the inventory plugin's `policy` option; `overrides` maps the keys of
    tier_policy.OVERRIDE_VARS (tier, models, max_context, exclude_gpus) to their values.
    Returns {"host_vars", "groups", "warnings", "unreadable", "tier", "reason"}. Raises
    tier_policy.PolicyError (FitRefused for a pin the host cannot hold) with the reason.
    """
    chosen = policy_from_config(dict(policy or {}))
    named = {OVERRIDE_VARS[key]: value for key, value in (overrides or {}).items()}
    steer = overrides_from_vars(named, chosen)
    try:
        report = parse_probe_output(output)
    except ProbeError as error:
        plan = unreachable_plan(f"probe output unreadable: {error}", chosen, steer)
    else:
        if ollama_version in (None, ""):
            plan = classify(report, chosen, steer)
        else:
            plan = classify(report, chosen, steer, str(ollama_version))
    return {
        "host_vars": plan.to_vars(),
        "groups": plan.groups,
        "warnings": list(plan.warnings),
        "unreadable": plan.unreadable,
        "tier": plan.tier,
        "reason": plan.reason,
    }
