#!/usr/bin/python
# Copyright (c) localllm.fleet contributors
# Apache License 2.0 (see galaxy.yml)
"""Ansible module localllm.fleet.ollama_bundle: import a model bundle into an Ollama store."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: ollama_bundle
short_description: Import models from a bundle made by scripts/model-bundle into an Ollama store
version_added: "0.1.0"
description:
  - Imports the models of a bundle (an uncompressed tar written by
    C(scripts/model-bundle export) on a connected machine) into the Ollama model store
    O(models_dir) of a host that cannot pull.
  - Reads the bundle's index first and unpacks only the blobs the store lacks (a blob is
    present when a file of its digest and size exists). Each one is written to a temporary
    file in the store's C(blobs) directory and hashed while it is written.
  - Nothing becomes visible before every needed blob has been verified; then the blobs are
    renamed to C(sha256-<hex>) (mode 0644, as Ollama writes them) and the manifests are
    written, each atomically. A bundle with a corrupt or missing blob fails the task naming
    the blob and its model, and leaves the store exactly as it was.
  - Works while Ollama is running. Ollama v0.32.15 reads the manifests from disk on every
    C(/api/tags) and C(/api/show) (its list cache re-syncs with the store per request), so
    imported models appear without a restart.
author:
  - localllm.fleet contributors
options:
  src:
    description:
      - Path of the bundle on the managed host.
    type: path
    required: true
  models_dir:
    description:
      - The Ollama store (C(OLLAMA_MODELS) of the service). Created if missing.
    type: path
    default: /usr/share/ollama/.ollama/models
  owner:
    description:
      - User that owns new blobs, manifests and directories (the user Ollama runs as).
    type: str
    default: ollama
  group:
    description:
      - Group of new blobs, manifests and directories.
    type: str
    default: ollama
notes:
  - In check mode nothing is written; the result says which models, how many blobs and
    how many bytes would be added. O(owner) and O(group) are not looked up, so a dry run
    works before Ollama's user exists. When O(src) is not on the host yet (the task that
    downloads or copies it did not run in check mode), the result is C(changed=true) with
    no models and zero counts.
  - Blobs already in the store are not re-hashed; they were verified when they arrived.
  - Temporary files of an import that was killed are removed by the next import after an
    hour (Ollama's start-up pruning removes them too).
seealso:
  - module: localllm.fleet.ollama_pull
  - module: localllm.fleet.ollama_model
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
"""

EXAMPLES = r"""
- name: Import the models of a bundle copied to the host
  localllm.fleet.ollama_bundle:
    src: /var/cache/localllm-fleet/models/models.bundle.tar
    models_dir: /usr/share/ollama/.ollama/models
"""

RETURN = r"""
models:
  description: Models whose manifests were written (new or changed).
  returned: always
  type: list
  elements: str
  sample: ["deepseek-r1:32b"]
blobs_added:
  description: Blobs unpacked into the store.
  returned: always
  type: int
bytes_added:
  description: Bytes of the blobs unpacked into the store.
  returned: always
  type: int
blobs_present:
  description: Blobs of the bundle the store already had (not unpacked).
  returned: always
  type: int
"""

import grp
import os
import pwd
import re

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.localllm.fleet.plugins.module_utils.model_bundle import (
    BundleError,
    import_bundle,
)
from ansible_collections.localllm.fleet.plugins.module_utils.progress import human_bytes


def _ids(module: AnsibleModule) -> tuple[int, int]:
    owner, group = module.params["owner"], module.params["group"]
    # ASCII digits only: str.isdigit() accepts "²", which int() refuses.
    try:
        uid = int(owner) if re.fullmatch(r"[0-9]{1,10}", owner) else pwd.getpwnam(owner).pw_uid
    except KeyError:
        module.fail_json(msg=f"owner {owner!r} does not exist on this host (is Ollama installed?)")
    try:
        gid = int(group) if re.fullmatch(r"[0-9]{1,10}", group) else grp.getgrnam(group).gr_gid
    except KeyError:
        module.fail_json(msg=f"group {group!r} does not exist on this host (is Ollama installed?)")
    return uid, gid


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "src": {"type": "path", "required": True},
            "models_dir": {"type": "path", "default": "/usr/share/ollama/.ollama/models"},
            "owner": {"type": "str", "default": "ollama"},
            "group": {"type": "str", "default": "ollama"},
        },
        supports_check_mode=True,
    )
    src = module.params["src"]
    if module.check_mode and not os.path.exists(src):
        module.exit_json(
            changed=True,
            models=[],
            blobs_added=0,
            bytes_added=0,
            blobs_present=0,
            msg=f"would import {src} (not on the host yet)",
        )
    uid, gid = (-1, -1) if module.check_mode else _ids(module)  # -1: unused in check mode
    try:
        result = import_bundle(
            src,
            module.params["models_dir"],
            uid=uid,
            gid=gid,
            check_mode=module.check_mode,
        )
    except BundleError as err:
        module.fail_json(msg=str(err), src=src)
    except OSError as err:
        module.fail_json(msg=f"cannot import {src}: {err}")
    verb = "would add" if module.check_mode else "added"
    module.exit_json(
        changed=result.changed,
        models=result.models,
        blobs_added=result.blobs_added,
        bytes_added=result.bytes_added,
        blobs_present=result.blobs_present,
        msg=(
            f"{verb} {result.blobs_added} blobs ({human_bytes(result.bytes_added)}), "
            f"{result.blobs_present} already present; models: {', '.join(result.models) or 'none'}"
        ),
    )


if __name__ == "__main__":
    main()
