#!/usr/bin/python
# Copyright (c) localllm.fleet contributors
# Apache License 2.0 (see galaxy.yml)
"""Ansible module localllm.fleet.fleet_tls_state: is a host's TLS material settled, in one read."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: fleet_tls_state
short_description: Tell in one read whether a host's fleet key and certificate need fleet_tls
version_added: "0.1.0"
description:
  - Reads the host's fleet TLS directory (C(ca.pem), C(host.key), C(host.crt)) and the
    packages fleet_tls installs, and reports whether all of it is what fleet_tls's steps
    would leave. When it is (C(settled)), the role skips those steps, about ten round trips
    a host; otherwise it runs them and they make or mend what is listed in C(problems).
  - One-sided by design. Anything that differs, cannot be read or cannot be told is a
    problem; the community.crypto steps then decide, and they are the only code that changes
    anything.
  - Checks the directory and files (kind, root ownership, modes 0755, 0644 and 0600), the CA
    certificate's content, that the key is an unencrypted ECDSA P-256 key, and that the
    certificate is for that key, names O(common_name) and exactly O(subject_alt_names) with
    the role's key usages, is signed by the CA and is valid at now plus
    O(renew_before_days).
  - Never returns key material. Read-only (C(changed) is always false).
author:
  - localllm.fleet contributors
requirements:
  - python3-cryptography on the host (without it, the host is not settled)
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
options:
  path:
    description: The host's fleet TLS directory (fleet_tls_dir).
    type: path
    required: true
  ca_pem:
    description: The fleet CA certificate (PEM) C(ca.pem) must hold, with one newline after
      it. Without it (a plan before the CA exists), the host is not settled.
    type: str
  common_name:
    description: The certificate's subject common name (the inventory name).
    type: str
    required: true
  subject_alt_names:
    description: The certificate's subjectAltNames, in order, as C(DNS:name) or C(IP:address).
    type: list
    elements: str
    required: true
  renew_before_days:
    description: The certificate must still be valid this many days from now.
    type: int
    required: true
  force:
    description: A renewal was asked for; the host is not settled.
    type: bool
    default: false
  packages:
    description: Packages that must be installed (read with C(dpkg-query)).
    type: list
    elements: str
    default: []
"""

EXAMPLES = r"""
- name: Read the host's TLS material
  localllm.fleet.fleet_tls_state:
    path: /etc/localllm-fleet/tls
    ca_pem: "{{ ca_pem }}"
    common_name: "{{ inventory_hostname }}"
    subject_alt_names: [DNS:gpu01.example.com, IP:10.0.0.11]
    renew_before_days: 30
    packages: [python3-cryptography]
  register: tls_state
"""

RETURN = r"""
settled:
  description: Whether every check held (fleet_tls has nothing to do on this host).
  returned: always
  type: bool
problems:
  description: Why not, one sentence each (no key material); empty when settled.
  returned: always
  type: list
  elements: str
  sample: ["host.crt is not valid at 2027-01-05 (renewal window)"]
"""

import datetime
import os

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.localllm.fleet.plugins.module_utils.fleet_tls_state import (
    CERT_MODE,
    DIR_MODE,
    HAS_CRYPTOGRAPHY,
    KEY_MODE,
    MAX_FILE_BYTES,
    UTC,
    certificate_problems,
    file_problems,
    key_problems,
    package_problems,
)
from ansible_collections.localllm.fleet.plugins.module_utils.nvidia_driver import (
    INSTALLED_QUERY,
    PackageError,
    installed_packages,
)
from ansible_collections.localllm.fleet.plugins.module_utils.path_state import lstat_summary


def _read(path: str, seen: dict | None, name: str) -> tuple[bytes | None, list[str]]:
    """A regular file's bytes (None when it is not one, with no problem: file_problems names
    that) or the problem that kept it from being read."""
    if seen is None or seen["kind"] != "file":
        return None, []
    # Not through a link that replaced the file since it was looked at, and not more than a
    # fleet file can be.
    try:
        descriptor = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        with os.fdopen(descriptor, "rb") as handle:
            content = handle.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        return None, [f"{name} cannot be read ({exc.strerror})"]
    if len(content) > MAX_FILE_BYTES:
        return None, [f"{name} is larger than {MAX_FILE_BYTES} bytes"]
    return content, []


def _package_problems(module: AnsibleModule, names: list[str]) -> list[str]:
    if not names:
        return []
    binary = module.get_bin_path("dpkg-query")
    if binary is None:
        return ["dpkg-query is not available to tell the packages apart"]
    # Exits 1 when a name is unknown to dpkg; the known ones are still printed.
    # The driver role's query, so that "installed" means the same in both roles.
    _, out, _ = module.run_command([binary, *INSTALLED_QUERY["apt"][1:], *names])
    try:
        installed = installed_packages(out, "apt")
    except PackageError as exc:
        return [str(exc)]
    return package_problems(names, installed)


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "path": {"type": "path", "required": True},
            "ca_pem": {"type": "str"},
            "common_name": {"type": "str", "required": True},
            "subject_alt_names": {"type": "list", "elements": "str", "required": True},
            "renew_before_days": {"type": "int", "required": True},
            "force": {"type": "bool", "default": False},
            "packages": {"type": "list", "elements": "str", "default": []},
        },
        supports_check_mode=True,
    )
    params = module.params
    directory = params["path"]
    problems: list[str] = []
    if params["force"]:
        problems.append("a renewal was asked for (fleet_tls_force_renew)")
    problems += _package_problems(module, params["packages"])

    problems += file_problems(directory, lstat_summary(directory), "dir", DIR_MODE)
    read = {}
    for name, mode in (("ca.pem", CERT_MODE), ("host.key", KEY_MODE), ("host.crt", CERT_MODE)):
        path = os.path.join(directory, name)
        seen = lstat_summary(path)
        problems += file_problems(name, seen, "file", mode)
        read[name], unreadable = _read(path, seen, name)
        problems += unreadable
    ca_pem, key_pem, cert_pem = params["ca_pem"], read["host.key"], read["host.crt"]
    if ca_pem is None:
        problems.append("no fleet CA certificate to compare with")
    elif read["ca.pem"] is not None and read["ca.pem"] != (ca_pem + "\n").encode():
        problems.append("ca.pem is not the fleet CA certificate")
    if key_pem is not None or cert_pem is not None:
        if not HAS_CRYPTOGRAPHY:
            problems.append("python3-cryptography cannot be imported")
        else:
            key = None
            if key_pem is not None:
                found, key = key_problems(key_pem)
                problems += found
            if cert_pem is not None and ca_pem is not None:
                renew_at = datetime.datetime.now(UTC) + datetime.timedelta(
                    days=params["renew_before_days"]
                )
                problems += certificate_problems(
                    cert_pem,
                    ca_pem.encode(),
                    key,
                    common_name=params["common_name"],
                    subject_alt_names=params["subject_alt_names"],
                    renew_at=renew_at,
                )
    module.exit_json(changed=False, settled=not problems, problems=problems)


if __name__ == "__main__":
    main()
