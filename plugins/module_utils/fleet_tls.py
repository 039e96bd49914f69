# Copyright (c) localllm.fleet contributors
# Apache License 2.0 (see galaxy.yml)
"""Names in fleet certificates: which subjectAltNames a host's certificate carries.

A fleet member reaches a host by an address (`fleet_host_address`), the controller and
operators by its inventory name or `ansible_host`; a certificate must name every one of
them that a client may dial, as an IP SAN when it is an address and a DNS SAN otherwise.
Loopback addresses and names are left out unless asked for explicitly: every host has them,
so they identify nothing. Pure functions (stdlib only) so the controller and tests share them.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping
from typing import Any

__all__ = ["TlsNameError", "host_address_kind", "member_address", "subject_alt_names"]

# RFC 1123 labels; a certificate's DNS names may also carry a leading wildcard label.
_LABEL = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$")
_LOOPBACK_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"}


class TlsNameError(ValueError):
    """A name that cannot go into a certificate, with what to do about it."""


def host_address_kind(value: str) -> str:
    """`IP` for an IPv4/IPv6 address, `DNS` for a valid host name; else TlsNameError."""
    text = str(value).strip()
    try:
        ipaddress.ip_address(text.strip("[]"))
        return "IP"
    except ValueError:
        pass
    name = text[:-1] if text.endswith(".") else text
    labels = name.split(".")
    if not name or len(name) > 253 or not all(_LABEL.match(label) for label in labels):
        raise TlsNameError(
            f"{value!r} is neither an IP address nor a valid DNS name (letters, digits and "
            "hyphens in dot-separated labels of at most 63 characters)"
        )
    return "DNS"


def member_address(name: str, variables: Mapping[str, Any]) -> str:
    """How fleet members reach host `name`: fleet_host_address, else ansible_host, else the name.

    The same fallback as fleet_tls's default for `fleet_host_address`, for code that reads
    another host's variables (where roles' defaults are not visible).
    """
    for key in ("fleet_host_address", "ansible_host"):
        value = variables.get(key)
        if value is not None and str(value).strip():
            return str(value).strip()
    return str(name)


def _is_loopback(kind: str, value: str) -> bool:
    if kind == "IP":
        return ipaddress.ip_address(value.strip("[]")).is_loopback
    return value.lower().rstrip(".") in _LOOPBACK_NAMES


def subject_alt_names(
    names: Iterable[str | None], extra: Iterable[str] = (), host: str = ""
) -> list[str]:
    """SANs (`DNS:x`, `IP:y`) for a host's certificate, in order, without duplicates.

    `names` are what inventory knows (inventory name, ansible_host, fleet_host_address):
    empty values and loopback addresses/names among them are skipped. `extra` are the
    operator's additions, taken as given (`DNS:`/`IP:` prefixes allowed, loopback kept),
    so a lab or a single-host setup can name 127.0.0.1 on purpose.
    """
    result: list[str] = []
    where = f" (host {host})" if host else ""

    def add(kind: str, value: str) -> None:
        if kind == "IP":
            value = str(ipaddress.ip_address(value.strip("[]")))
        else:
            value = value.lower().rstrip(".")
        entry = f"{kind}:{value}"
        if entry not in result:
            result.append(entry)

    for name in names:
        if name is None or not str(name).strip():
            continue
        text = str(name).strip()
        try:
            kind = host_address_kind(text)
        except TlsNameError as error:
            raise TlsNameError(f"{error}{where}") from None
        if not _is_loopback(kind, text):
            add(kind, text)
    for item in extra:
        text = str(item).strip()
        prefix, _, rest = text.partition(":")
        if prefix in ("DNS", "IP") and rest:
            try:
                kind = host_address_kind(rest)
            except TlsNameError as error:
                raise TlsNameError(f"extra SAN {text!r}: {error}{where}") from None
            if kind != prefix:
                wanted = "an IP address" if prefix == "IP" else "a DNS name"
                raise TlsNameError(f"extra SAN {text!r}: {rest!r} is not {wanted}{where}")
            add(kind, rest)
        else:
            try:
                kind = host_address_kind(text)
            except TlsNameError as error:
                raise TlsNameError(f"extra SAN: {error}{where}") from None
            add(kind, text)
    if not result:
        raise TlsNameError(
            f"no name to put in the certificate{where}: its inventory name and addresses are all "
            "loopback; set fleet_host_address to the address fleet members use"
        )
    return result
