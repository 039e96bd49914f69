# Copyright (c) localllm.fleet contributors
# Apache License 2.0 (see galaxy.yml)
"""The firewall plan of one host: which ports are open to which sources.

Roles that open a port on a host (ollama_edge, fleet_gateway, fleet_haproxy's metrics)
declare an *opening*: a port, a protocol and the sources allowed (addresses, networks or
host names). The fleet_firewall role turns the openings, the administrators' networks for
SSH and the ports that must never be reached from off the host into one nftables table.
This module validates and normalises all of it (every error names the opening it is about),
resolves host names once on the control node, and splits sources into IPv4 and IPv6 sets.
Stdlib only.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

__all__ = ["FirewallError", "normalise_sources", "plan", "resolve_sources"]

_PROTOCOLS = ("tcp", "udp")
_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_ANYWHERE = {"any", "anywhere", "all"}
_HOSTNAME = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)(\.(?!-)[A-Za-z0-9-]{1,63}(?<!-))*\.?$")


Resolver = Callable[[str], list[str]]


class FirewallError(ValueError):
    """A firewall setting that cannot be applied, with what to change."""


def _network(value: Any, where: str) -> ipaddress._BaseNetwork:
    text = str(value).strip()
    if text.lower() in _ANYWHERE:
        raise FirewallError(
            f"{where}: write 0.0.0.0/0 and ::/0 for 'anywhere' rather than {value!r}"
        )
    try:
        return ipaddress.ip_network(text.strip("[]"), strict=False)
    except ValueError:
        raise FirewallError(f"{where}: {value!r} is not an IP address or network (CIDR)") from None


def normalise_sources(values: Iterable[Any], where: str) -> dict[str, list[str]]:
    """`{"v4": [...], "v6": [...]}`: collapsed networks, sorted, no duplicates."""
    if isinstance(values, (str, bytes)) or not isinstance(values, Iterable):
        raise FirewallError(f"{where}: sources must be a list, got {values!r}")
    v4: list[ipaddress.IPv4Network] = []
    v6: list[ipaddress.IPv6Network] = []
    for value in values:
        network = _network(value, where)
        (v4 if network.version == 4 else v6).append(network)  # type: ignore[arg-type]
    return {
        "v4": [str(n) for n in ipaddress.collapse_addresses(v4)],
        "v6": [str(n) for n in ipaddress.collapse_addresses(v6)],
    }


def _port(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise FirewallError(f"{where}: port must be a number 1-65535, got {value!r}")
    text = str(value).strip()
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise FirewallError(f"{where}: port must be a number 1-65535, got {value!r}")
    return int(text)


def _protocol(value: Any, where: str) -> str:
    protocol = str(value or "tcp").lower()
    if protocol not in _PROTOCOLS:
        raise FirewallError(f"{where}: proto must be tcp or udp, got {value!r}")
    return protocol


def plan(
    openings: Sequence[Mapping[str, Any]],
    ssh_port: Any,
    ssh_sources: Iterable[Any],
    private_ports: Iterable[Any] = (),
    resolver: Resolver | None = None,
) -> dict[str, Any]:
    """The rule set as data for the nftables template.

    `openings`: `{name, port, proto?, sources}`; the same port and protocol may be opened by
    several roles (their sources are merged). `private_ports`: reachable on loopback only,
    whatever any opening says (a port that is both open and private is refused).
    """
    if not isinstance(openings, Sequence) or isinstance(openings, (str, bytes)):
        raise FirewallError(f"openings must be a list, got {openings!r}")
    merged: dict[tuple[str, int], dict[str, Any]] = {}
    for position, opening in enumerate(openings):
        if not isinstance(opening, Mapping):
            raise FirewallError(f"opening #{position + 1} must be a mapping, got {opening!r}")
        name = str(opening.get("name") or f"opening #{position + 1}")
        if not _NAME.match(name):
            raise FirewallError(f"opening {name!r}: name must be letters, digits, . _ - only")
        where = f"opening {name}"
        unknown = set(opening) - {"name", "port", "proto", "sources", "comment"}
        if unknown:
            raise FirewallError(f"{where}: unknown keys {sorted(unknown)}")
        port = _port(opening.get("port"), where)
        protocol = _protocol(opening.get("proto"), where)
        raw = opening.get("sources") or []
        if isinstance(raw, (str, bytes)) or not isinstance(raw, Iterable):
            raise FirewallError(f"{where}: sources must be a list, got {raw!r}")
        sources = normalise_sources(resolve_sources(raw, where, resolver), where)
        entry = merged.setdefault(
            (protocol, port), {"port": port, "proto": protocol, "names": [], "v4": [], "v6": []}
        )
        if name not in entry["names"]:
            entry["names"].append(name)
        for family in ("v4", "v6"):
            entry[family] = normalise_sources(entry[family] + sources[family], where)[family]
    where = "SSH sources (fleet_firewall_admin_cidrs)"
    ssh = normalise_sources(resolve_sources(ssh_sources, where, resolver), where)
    if not ssh["v4"] and not ssh["v6"]:
        raise FirewallError(
            "SSH would be closed to everyone: set fleet_firewall_admin_cidrs (the networks "
            "administrators and the control node connect from)"
        )
    private = sorted(
        {_port(p, "private ports (fleet_firewall_private_ports)") for p in private_ports}
    )
    ssh_port_number = _port(ssh_port, "fleet_firewall_ssh_port")
    if ssh_port_number in private:
        raise FirewallError(f"port {ssh_port_number} is the SSH port and a private port")
    for (protocol, port), entry in merged.items():
        if protocol == "tcp" and port in private:
            raise FirewallError(
                f"opening {', '.join(entry['names'])}: port {port} must stay reachable on "
                "loopback only (it serves an unauthenticated API); open another port"
            )
        if not entry["v4"] and not entry["v6"]:
            entry["empty"] = True
    return {
        "ssh_port": ssh_port_number,
        "ssh": ssh,
        "private_ports": private,
        "openings": [merged[key] for key in sorted(merged)],
    }


def _system_resolver(name: str) -> list[str]:
    return sorted({info[4][0] for info in socket.getaddrinfo(name, None, type=socket.SOCK_STREAM)})


def resolve_sources(
    entries: Iterable[Any], where: str, resolver: Resolver | None = None
) -> list[str]:
    """Addresses and networks as given; host names replaced by every address they resolve to.

    The firewall matches addresses, so names are resolved once, when the plan is made, on
    the control node; a name that does not resolve is an error naming it.
    """
    resolve = resolver or _system_resolver
    result: list[str] = []
    for entry in entries:
        if entry is None or not str(entry).strip():
            continue
        text = str(entry).strip()
        try:
            result.append(str(ipaddress.ip_network(text.strip("[]"), strict=False)))
            continue
        except ValueError:
            pass
        if text.lower() in _ANYWHERE:
            raise FirewallError(
                f"{where}: write 0.0.0.0/0 and ::/0 for 'anywhere' rather than {text!r}"
            )
        if not _HOSTNAME.match(text) or len(text) > 253:
            raise FirewallError(
                f"{where}: {text!r} is not an IP address, a network (CIDR) or a host name"
            )
        try:
            addresses = resolve(text)
        except OSError as error:
            raise FirewallError(
                f"{where}: cannot resolve {text!r} ({error}); give its address instead "
                "(fleet_host_address)"
            ) from None
        if not addresses:
            raise FirewallError(f"{where}: {text!r} resolves to no address")
        result.extend(addresses)
    return result
