#!/usr/bin/python
# Copyright (c) localllm.fleet contributors
# Apache License 2.0 (see galaxy.yml)
"""Ansible module localllm.fleet.ssh_session_info: where this run's SSH connection comes from."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: ssh_session_info
short_description: Report the address the SSH connection of this run comes from
version_added: "0.1.0"
description:
  - Reads C(SSH_CONNECTION) from the module's own environment or, when privilege escalation
    reset it (sudo), from the environment of the nearest ancestor process that has it.
  - The fleet_firewall role uses it so that new rules always let the control node back in.
  - Read-only; never changes anything.
author:
  - localllm.fleet contributors
notes:
  - Reading an ancestor's environment needs root (C(become)) when the ancestor belongs to
    another user; without it only the module's own environment is read.
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
"""

EXAMPLES = r"""
- name: Where does the control node connect from?
  localllm.fleet.ssh_session_info:
  register: session

- name: Show it
  ansible.builtin.debug:
    msg: "{{ session.client_address | default('not an SSH session') }}"
"""

RETURN = r"""
client_address:
  description: The client's IP address, or null when the module does not run under SSH
    (a local connection, ansible-pull).
  returned: always
  type: str
  sample: 10.20.0.5
"""

import os

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.localllm.fleet.plugins.module_utils.ssh_session import client_address


def _ancestor_environments():
    """The environment blocks of this process and its ancestors, nearest first."""
    pid = os.getpid()
    seen = set()
    while pid > 1 and pid not in seen:
        seen.add(pid)
        try:
            with open(f"/proc/{pid}/environ", "rb") as handle:
                yield handle.read()
        except OSError:
            pass
        try:
            with open(f"/proc/{pid}/stat", "rb") as handle:
                stat = handle.read()
            # The command name may hold spaces and parentheses: the fields after the last ')'.
            pid = int(stat[stat.rindex(b")") + 2 :].split()[1])
        except (OSError, ValueError, IndexError):
            return


def main() -> None:
    module = AnsibleModule(argument_spec={}, supports_check_mode=True)
    module.exit_json(changed=False, client_address=client_address(_ancestor_environments()))


if __name__ == "__main__":
    main()
