#!/usr/bin/python
# Copyright (c) localllm.fleet contributors
# Apache License 2.0 (see galaxy.yml)
"""Ansible module localllm.fleet.ollama_info: what an Ollama server has and runs."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: ollama_info
short_description: Report an Ollama server's version, models and running models
version_added: "0.1.0"
description:
  - Reads C(/api/version), C(/api/tags) and C(/api/ps) of the host's Ollama API.
  - Read-only; never changes anything (C(changed) is always false).
  - With O(smoke_stamp), also reads the figures of the last smoke test that passed from the
    ollama_models role's stamp (model names, whether each answered, tokens per second; never
    text a model read or wrote).
options:
  smoke_stamp:
    description:
      - Path of the ollama_models role's smoke stamp
        (C(<ollama_models_modelfile_dir>/.smoke-passed)).
      - A missing stamp, or one without figures (written by an older release), returns
        RV(smoke) null; one that cannot be read or parsed too, with a warning naming why.
    type: path
author:
  - localllm.fleet contributors
notes:
  - "Fails with C(cannot reach Ollama at <url>: <reason>; is the service running?) when
    nothing answers."
extends_documentation_fragment:
  - localllm.fleet.ollama_api
seealso:
  - module: localllm.fleet.ollama_model
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
"""

EXAMPLES = r"""
- name: What does Ollama hold?
  localllm.fleet.ollama_info:
  register: ollama

- name: Show the models
  ansible.builtin.debug:
    msg: "{{ ollama.models | map(attribute='name') | list }}"
"""

RETURN = r"""
version:
  description: The server's version (C(/api/version)).
  returned: always
  type: str
  sample: 0.32.15
models:
  description: The models in the store, newest first (C(/api/tags)).
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: The model's name, e.g. C(deepseek-r1:32b).
      type: str
    model:
      description: The same, as Ollama also reports it.
      type: str
    size:
      description: Bytes of all its blobs.
      type: int
    digest:
      description: The manifest's sha256 (hex).
      type: str
    modified_at:
      description: When the manifest was written (RFC 3339).
      type: str
    details:
      description: C(format), C(family), C(families), C(parameter_size), C(quantization_level).
      type: dict
running:
  description: The models loaded in memory (C(/api/ps)).
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: The model's name.
      type: str
    model:
      description: The same, as Ollama also reports it.
      type: str
    size:
      description: Bytes of memory the loaded model takes.
      type: int
    size_vram:
      description: Of which in GPU memory.
      type: int
    digest:
      description: The manifest's sha256 (hex).
      type: str
    expires_at:
      description: When it will be unloaded if unused (RFC 3339).
      type: str
    context_length:
      description: The context it was loaded with (newer Ollama versions only).
      type: int
smoke:
  description:
    - The last passing smoke test (O(smoke_stamp)), or null.
    - C(timestamp) (seconds since the epoch, UTC) and C(results), each with C(model), C(ok),
      C(tokens_per_second) and C(eval_count).
  returned: when O(smoke_stamp) is given
  type: dict
  sample: {"timestamp": 1796652919, "results": [{"model": "fleet/deepseek-r1:32b", "ok": true,
           "tokens_per_second": 32.9, "eval_count": 36}]}
"""

from typing import Any

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.localllm.fleet.plugins.module_utils.fleet_monitoring import (
    SMOKE_STAMP_MAX_BYTES,
    MonitoringError,
    smoke_stamp_record,
)
from ansible_collections.localllm.fleet.plugins.module_utils.ollama_api import (
    API_ARGUMENT_SPEC,
    OllamaClient,
    OllamaError,
    OllamaUnreachable,
)

_DETAILS = ("format", "family", "families", "parameter_size", "quantization_level")


def model_entry(entry: dict[str, Any]) -> dict[str, Any]:
    details = entry.get("details") if isinstance(entry.get("details"), dict) else {}
    return {
        "name": entry.get("name"),
        "model": entry.get("model"),
        "size": entry.get("size"),
        "digest": entry.get("digest"),
        "modified_at": entry.get("modified_at"),
        "details": {key: details.get(key) for key in _DETAILS},
    }


def running_entry(entry: dict[str, Any]) -> dict[str, Any]:
    out = {
        key: entry.get(key)
        for key in ("name", "model", "size", "size_vram", "digest", "expires_at")
    }
    if entry.get("context_length") is not None:
        out["context_length"] = entry["context_length"]
    return out


def read_smoke_stamp(path: str) -> tuple[dict[str, Any] | None, str]:
    """The last passing smoke test's record from the stamp at `path` (None when there is
    none), and why it was ignored when it cannot be used ('' otherwise)."""
    try:
        with open(path, "rb") as stamp:
            return smoke_stamp_record(stamp.read(SMOKE_STAMP_MAX_BYTES + 1)), ""
    except FileNotFoundError:
        return None, ""
    except OSError as err:
        return None, f"cannot read it ({err.strerror or err})"
    except MonitoringError as err:
        return None, str(err)


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            **API_ARGUMENT_SPEC,
            "smoke_stamp": {"type": "path"},
        },
        supports_check_mode=True,
    )
    try:
        client = OllamaClient(module.params["api_url"], module.params["timeout"])
        result = {
            "version": client.version(),
            "models": [model_entry(m) for m in client.tags()],
            "running": [running_entry(m) for m in client.ps()],
        }
    except ValueError as err:
        module.fail_json(msg=str(err))
    except OllamaUnreachable as err:
        module.fail_json(msg=str(err))
    except OllamaError as err:
        module.fail_json(msg=f"Ollama at {module.params['api_url']}: {err}")
    if module.params["smoke_stamp"]:
        result["smoke"], why = read_smoke_stamp(module.params["smoke_stamp"])
        if why:
            module.warn(f"ignoring the smoke stamp {module.params['smoke_stamp']}: {why}")
    module.exit_json(changed=False, **result)


if __name__ == "__main__":
    main()
