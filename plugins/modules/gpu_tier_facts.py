#!/usr/bin/python
# Copyright (c) localllm.fleet contributors
# Apache License 2.0 (see galaxy.yml)
"""Ansible module localllm.fleet.gpu_tier_facts: this host's tier, decided on the host."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: gpu_tier_facts
short_description: Classify this host as the gpu_tier inventory plugin would (pull mode)
version_added: "0.1.0"
description:
  - Runs the C(localllm.fleet.gpu_tier) inventory plugin's probe on the host itself and
    decides its tier with the same policy code, for runs that have no controller probing
    the fleet (C(ansible-pull), see playbooks/pull-converge.yml and docs/pull.md).
  - Returns in RV(host_vars) the host variables the plugin would set (C(gpu_tier),
    C(ollama_models), C(gpu_probe_status), the server settings, ...) and in RV(groups) the
    groups it would put the host in (C(tier_<name>), C(gpu)/C(cpu), ...).
  - A host whose probe cannot be read gets no tier (RV(tier) is V(null), RV(reason) says why),
    unless O(pin) names one. A pin the host cannot hold fails with the arithmetic.
  - Read-only; never changes the host.
author:
  - localllm.fleet contributors
options:
  policy:
    description:
      - Changes to the tier policy, as the gpu_tier plugin's C(policy) option (see
        docs/tiers.md).
    type: dict
    default: {}
  pin:
    description: Pin a tier, as C(gpu_tier_pin).
    type: str
  models:
    description: Pin models, as C(gpu_tier_models).
    type: list
    elements: str
  max_context:
    description: Cap num_ctx, as C(gpu_tier_max_context).
    type: int
  exclude_gpus:
    description: GPUs (index, UUID or bus id) left out, as C(gpu_tier_exclude_gpus).
    type: list
    elements: str
    default: []
  ollama_version:
    description:
      - The Ollama release the host runs (its NVIDIA driver floor); empty or omitted, the
        collection's pinned release.
    type: str
attributes:
  check_mode:
    support: full
    details: The module only reads; a check-mode run decides the same tier.
  diff_mode:
    support: none
seealso:
  - plugin: localllm.fleet.gpu_tier
    plugin_type: inventory
  - module: localllm.fleet.gpu_facts
"""

EXAMPLES = r"""
- name: Classify this host
  localllm.fleet.gpu_tier_facts:
    pin: "{{ gpu_tier_pin | default(omit) }}"
  register: tier

- name: Take the plugin's variables
  ansible.builtin.set_fact:
    "{{ item.key }}": "{{ item.value }}"
  loop: "{{ tier.host_vars | dict2items }}"
"""

RETURN = r"""
tier:
  description: The tier, or V(null) when the host could not be read and nothing was pinned.
  returned: always
  type: str
  sample: small
reason:
  description: Why (the plugin's C(gpu_tier_reason)).
  returned: always
  type: str
  sample: "no NVIDIA GPU: deepseek-r1:1.5b on CPU"
host_vars:
  description: The host variables the gpu_tier plugin sets (names in docs/inventory.md).
  returned: always
  type: dict
groups:
  description: The groups the plugin puts the host in.
  returned: always
  type: list
  elements: str
  sample: [cpu, tier_tiny]
unreadable:
  description: Whether the host could not be read (the plugin's C(gpu_unreachable)).
  returned: always
  type: bool
fit_warnings:
  description: >-
    The plugin's warnings about the fit (also shown as task warnings). Not C(warnings),
    which Ansible reserves for its own.
  returned: always
  type: list
  elements: str
"""

import os

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.localllm.fleet.plugins.module_utils.local_tier import (
    local_plan,
    probe_path,
)
from ansible_collections.localllm.fleet.plugins.module_utils.nvidia_smi import PROBE_SCRIPT
from ansible_collections.localllm.fleet.plugins.module_utils.tier_policy._catalog import PolicyError

ARGUMENT_SPEC = {
    "policy": {"type": "dict", "default": {}},
    "pin": {"type": "str"},
    "models": {"type": "list", "elements": "str"},
    "max_context": {"type": "int"},
    "exclude_gpus": {"type": "list", "elements": "str", "default": []},
    "ollama_version": {"type": "str"},
}


def main() -> None:
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    params = module.params
    rc, out, err = module.run_command(
        ["/bin/sh", "-c", PROBE_SCRIPT],
        environ_update={"PATH": probe_path(os.environ.get("PATH"))},
    )
    overrides = {
        "tier": params["pin"],
        "models": params["models"],
        "max_context": params["max_context"],
        "exclude_gpus": params["exclude_gpus"],
    }
    try:
        result = local_plan(out, params["policy"], overrides, params["ollama_version"])
    except PolicyError as error:
        module.fail_json(msg=f"{error.option}: {error.message} (see docs/tiers.md)", rc=rc)
    result["fit_warnings"] = result.pop("warnings")
    for warning in result["fit_warnings"]:
        module.warn(warning)
    if result["unreadable"] and err:
        result["stderr"] = err[-2000:]
    module.exit_json(changed=False, **result)


if __name__ == "__main__":
    main()
