#!/usr/bin/python
# Copyright (c) localllm.fleet contributors
# Apache License 2.0 (see galaxy.yml)
"""Ansible module localllm.fleet.ollama_install_info: what of Ollama is on a host, in one read."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: ollama_install_info
short_description: Read what of Ollama is installed on a host, and check its API port is free for it
version_added: "0.1.0"
description:
  - Reads, in one module run, what the ollama role would otherwise read in several steps
    before it changes anything. That is the version in service (the C(current) link), whether
    the pinned version is unpacked, how the install layout differs from what the role makes,
    the unpacked versions, which of the given groups exist, and who listens on the API port.
  - With O(port), fails when a program other than the service's main process listens on
    that port (Ollama could not start there), before anything on the host changes.
  - Read-only; never changes anything (C(changed) is always false).
author:
  - localllm.fleet contributors
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
options:
  install_root:
    description: Where the versions are unpacked (C(versions/<version>)) and C(current) points.
    type: path
    required: true
  version:
    description: The pinned version, without a leading C(v). Without it, nothing about the
      pinned version is reported (C(target_installed) false, C(install_drift) empty).
    type: str
  bin_link:
    description: The link in C(PATH) that points at C(<install_root>/current/bin/ollama).
    type: path
    default: /usr/local/bin/ollama
  service:
    description: The systemd service whose main process may hold O(port).
    type: str
    default: ollama
  port:
    description: The API port. When set, the module fails if anything but the service's
      main process listens on it (read with C(ss) and C(systemctl show)).
    type: int
  groups:
    description: Group names to look up; C(groups_present) lists those the host has.
    type: list
    elements: str
    default: []
"""

EXAMPLES = r"""
- name: Read what is installed
  localllm.fleet.ollama_install_info:
    install_root: /opt/ollama
    version: 0.32.15
    port: 11434
    groups: [video, render]
  register: installed
"""

RETURN = r"""
previous_version:
  description: The version in service now (the C(current) link's target), empty if none.
  returned: always
  type: str
  sample: 0.32.14
target_installed:
  description: Whether C(<install_root>/versions/<version>/bin/ollama) exists.
  returned: always
  type: bool
install_drift:
  description: How the layout differs from what the role's install step makes (the versions
    directory, C(current) and O(bin_link)), one sentence each; empty when it is as left.
  returned: always
  type: list
  elements: str
versions:
  description: The unpacked versions' directories, with their modification times.
  returned: always
  type: list
  elements: dict
  contains:
    path:
      description: The directory.
      type: str
    mtime:
      description: Its modification time (seconds since the epoch).
      type: float
groups_present:
  description: The names of O(groups) that exist on the host, in the order given.
  returned: always
  type: list
  elements: str
listeners:
  description: C(ss) lines of what listens on O(port); empty without O(port).
  returned: always
  type: list
  elements: str
main_pid:
  description: The service's main process (C(0) when it does not run); empty without O(port).
  returned: always
  type: str
"""

import grp
import os

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.localllm.fleet.plugins.module_utils.ollama_release import (
    foreign_listeners,
    install_drift,
)
from ansible_collections.localllm.fleet.plugins.module_utils.path_state import lstat_summary


def _versions(directory: str) -> list[dict]:
    try:
        entries = list(os.scandir(directory))
    except (FileNotFoundError, NotADirectoryError):
        return []
    found = [
        {"path": entry.path, "mtime": entry.stat(follow_symlinks=False).st_mtime}
        for entry in entries
        if entry.is_dir(follow_symlinks=False)
    ]
    return sorted(found, key=lambda item: item["path"])


def _group_exists(name: str) -> bool:
    try:
        grp.getgrnam(name)
    except KeyError:
        return False
    return True


def _command(module: AnsibleModule, argv: list[str]) -> str:
    rc, out, err = module.run_command(argv)
    if rc != 0:
        module.fail_json(msg=f"{' '.join(argv)} failed (rc {rc}): {(err or out).strip()}")
    return out


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "install_root": {"type": "path", "required": True},
            "version": {"type": "str"},
            "bin_link": {"type": "path", "default": "/usr/local/bin/ollama"},
            "service": {"type": "str", "default": "ollama"},
            "port": {"type": "int"},
            "groups": {"type": "list", "elements": "str", "default": []},
        },
        supports_check_mode=True,
    )
    params = module.params
    root = params["install_root"].rstrip("/") or "/"
    version = params["version"]
    current = lstat_summary(f"{root}/current")
    result = {
        "changed": False,
        "previous_version": os.path.basename(current["target"])
        if current and current["kind"] == "link"
        else "",
        "target_installed": bool(version)
        and os.path.exists(f"{root}/versions/{version}/bin/ollama"),
        "install_drift": [],
        "versions": _versions(f"{root}/versions"),
        "groups_present": [name for name in params["groups"] if _group_exists(name)],
        "listeners": [],
        "main_pid": "",
    }
    if version:
        paths = {path: lstat_summary(path) for path in (f"{root}/versions", params["bin_link"])}
        paths[f"{root}/current"] = current
        result["install_drift"] = install_drift(root, version, params["bin_link"], paths)
    port = params["port"]
    if port is not None:
        if not 0 < port < 65536:
            module.fail_json(msg=f"port {port} is not a TCP port (1-65535).", **result)
        out = _command(module, ["ss", "-H", "-l", "-t", "-n", "-p", f"sport = :{port}"])
        result["listeners"] = [line for line in out.splitlines() if line.strip()]
        main_pid = _command(
            module,
            ["systemctl", "show", "--property=MainPID", "--value", f"{params['service']}.service"],
        ).strip()
        result["main_pid"] = main_pid
        others = foreign_listeners(out, main_pid)
        if others:
            module.fail_json(
                msg=(
                    f"Port {port} is already in use by another program: {'; '.join(others)}. "
                    "Stop it or choose another ollama_host. Nothing was changed."
                ),
                **result,
            )
    module.exit_json(**result)


if __name__ == "__main__":
    main()
