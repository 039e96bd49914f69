#!/usr/bin/python
# Copyright (c) localllm.fleet contributors
# Apache License 2.0 (see galaxy.yml)
"""Ansible module localllm.fleet.gateway_keys: write the gateway's client keys file."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: gateway_keys
short_description: Write the fleet gateway's client keys as salted, peppered hashes
version_added: "0.2.0"
description:
  - Writes the keys file that the fleet gateway's LiteLLM custom_auth hook reads on every
    request. It holds per client its name, allowed models, rate limit and
    HMAC-SHA256(pepper, salt || key). Keys are never written, returned or logged.
  - The pepper is a secret file on the host, made once (32 random bytes, hex) when it is
    missing. The salt is random per keys file and kept while the file stays readable, so
    the same clients give the same file and a second run reports no change.
  - The file is replaced atomically (the hook notices the new inode and re-reads it), so
    adding or revoking a client needs no restart.
  - Clients are checked as the role checks them on the control node (names, key lengths,
    duplicates, models, rates); errors name the client, never the key.
author:
  - localllm.fleet contributors
options:
  path:
    description: The keys file (JSON).
    type: path
    required: true
  pepper_path:
    description: The pepper file; created when missing.
    type: path
    required: true
  clients:
    description:
      - The clients, each C({name, models, rpm}) (see the fleet_gateway role), without keys.
    type: list
    elements: dict
    required: true
  keys:
    description:
      - Each client's key, name -> key. Masked in every output of the module.
    type: dict
    required: true
  models:
    description: The gateway's public model names (any other name is answered 404).
    type: list
    elements: str
    required: true
  known_models:
    description: Names a client may be allowed (served or declared); default O(models).
    type: list
    elements: str
  aliases:
    description: Alias -> model name; allowing one allows the other.
    type: dict
    default: {}
  complete:
    description:
      - False when some model host's models are unknown; unknown allowed names are then kept.
    type: bool
    default: true
  min_length:
    description: The shortest key accepted.
    type: int
    default: 32
  owner:
    description: Owner of both files.
    type: str
    default: root
  group:
    description: Group of both files (the service's group, which reads them).
    type: str
    required: true
  mode:
    description: Mode of both files.
    type: str
    default: "0640"
notes:
  - Use it with C(no_log=true), since the task's arguments carry the keys.
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
    details: The diff lists client names, models and rates; never keys or hashes.
"""

EXAMPLES = r"""
- name: Write the client keys
  localllm.fleet.gateway_keys:
    path: /etc/litellm/keys.json
    pepper_path: /etc/litellm/keys.pepper
    # name, models and rpm of each client; the keys apart, masked
    clients: [{name: billing-bot, models: [deepseek-r1], rpm: 60}]
    keys: {billing-bot: "{{ vault_billing_bot_key }}"}
    models: ["fleet/deepseek-r1:32b", "deepseek-r1"]
    group: litellm
  no_log: true
"""

RETURN = r"""
clients:
  description: Names of the clients in the file.
  returned: always
  type: list
  elements: str
  sample: ["billing-bot", "search"]
pepper_created:
  description: Whether the pepper was made in this run (every earlier hash is then replaced).
  returned: always
  type: bool
"""

import grp
import os
import pwd

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.localllm.fleet.plugins.module_utils.atomic_file import write_atomic
from ansible_collections.localllm.fleet.plugins.module_utils.gateway_keys import (
    GatewayKeysError,
    describe,
    new_secret,
    next_document,
    read_secret,
    render_document,
    validate_clients,
)


def _read(path: str) -> str | None:
    try:
        with open(path) as handle:
            return handle.read()
    except FileNotFoundError:
        return None


def _write(path: str, text: str, uid: int, gid: int, mode: int) -> None:
    write_atomic(path, text, mode, uid=uid, gid=gid, prefix=".keys-")


def _attributes_differ(path: str, uid: int, gid: int, mode: int) -> bool:
    status = os.stat(path)
    return (status.st_uid, status.st_gid, status.st_mode & 0o7777) != (uid, gid, mode)


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "path": {"type": "path", "required": True},
            "pepper_path": {"type": "path", "required": True},
            "clients": {"type": "list", "elements": "dict", "required": True},
            "keys": {"type": "dict", "required": True, "no_log": True},
            "models": {"type": "list", "elements": "str", "required": True},
            "known_models": {"type": "list", "elements": "str"},
            "aliases": {"type": "dict", "default": {}},
            "complete": {"type": "bool", "default": True},
            "min_length": {"type": "int", "default": 32},
            "owner": {"type": "str", "default": "root"},
            "group": {"type": "str", "required": True},
            "mode": {"type": "str", "default": "0640"},
        },
        supports_check_mode=True,
    )
    params = module.params
    keyed = []
    for entry in params["clients"]:
        if "key" in entry:
            module.fail_json(msg="pass the keys in `keys` (masked), not inside `clients`")
        name = entry.get("name")
        keyed.append({**entry, "key": params["keys"].get(name) if isinstance(name, str) else None})
    unused = sorted(set(params["keys"]) - {entry.get("name") for entry in params["clients"]})
    if unused:
        module.fail_json(msg=f"keys given for clients that are not declared: {unused}")
    try:
        clients = validate_clients(
            keyed,
            params["known_models"] if params["known_models"] is not None else params["models"],
            params["min_length"],
            params["aliases"],
            params["complete"],
        )
    except GatewayKeysError as err:
        module.fail_json(msg=str(err))
    mode = int(params["mode"], 8)
    try:
        uid = pwd.getpwnam(params["owner"]).pw_uid
        gid = grp.getgrnam(params["group"]).gr_gid
    except KeyError:
        if not module.check_mode:
            module.fail_json(
                msg=f"user {params['owner']!r} or group {params['group']!r} does not exist"
            )
        uid = gid = -1
    pepper_text = _read(params["pepper_path"])
    pepper_created = pepper_text is None
    try:
        pepper = new_secret() if pepper_created else read_secret(params["pepper_path"])
    except GatewayKeysError as err:
        module.fail_json(
            msg=f"{err}; remove it to have a new one made (every client's hash changes)"
        )
    existing = _read(params["path"])
    document, current = next_document(
        None if pepper_created else existing, clients, pepper, params["models"]
    )
    text = render_document(document)
    changed = pepper_created or text != existing
    if not changed and uid >= 0:
        changed = _attributes_differ(params["path"], uid, gid, mode) or _attributes_differ(
            params["pepper_path"], uid, gid, mode
        )
    if changed and not module.check_mode:
        try:
            if pepper_created:
                _write(params["pepper_path"], pepper + "\n", uid, gid, mode)
            elif _attributes_differ(params["pepper_path"], uid, gid, mode):
                os.chown(params["pepper_path"], uid, gid)
                os.chmod(params["pepper_path"], mode)
            _write(params["path"], text, uid, gid, mode)
        except OSError as err:
            module.fail_json(msg=f"cannot write {params['path']}: {err}")
    result = {
        "changed": changed,
        "clients": [client["name"] for client in document["clients"]],
        "pepper_created": pepper_created,
    }
    if module._diff:
        result["diff"] = {
            "before_header": params["path"],
            "after_header": params["path"],
            "before": describe(current),
            "after": describe(document),
        }
    module.exit_json(**result)


if __name__ == "__main__":
    main()
