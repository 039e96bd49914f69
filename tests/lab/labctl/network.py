"""The lab network (its address layout) and the controller's guard that keeps it offline."""

from __future__ import annotations

import ipaddress
import json
import shutil

from .common import LABEL, NETWORK, LabError, log, podman, run
from .containers import lab_containers, ready_marker

# The controller's nftables table that keeps lab hosts inside the lab (see ensure_guard).
GUARD_TABLE = "localllm_lab"


def network_layout(subnet: str) -> tuple[str, str]:
    """The lab network's quarters: (dynamic range, scenario range).

    Lower half: the fleet's fixed addresses (lab_ip, the mirror). Third quarter: addresses
    podman hands to molecule scenario hosts. Last quarter: fixed addresses a scenario picks
    for its hosts (`ip:` in molecule.yml), never handed out by podman.
    """
    quarters = list(ipaddress.ip_network(subnet).subnets(prefixlen_diff=2))
    return str(quarters[2]), str(quarters[3])


def network_state() -> tuple[str, str, str] | None:
    """(subnet, first and last address podman hands out) of the lab network, if it exists."""
    result = podman("network", "inspect", NETWORK, check=False)
    if result.returncode != 0:
        return None
    subnet = (json.loads(result.stdout)[0].get("subnets") or [{}])[0]
    lease = subnet.get("lease_range") or {}
    return subnet.get("subnet", ""), lease.get("start_ip", ""), lease.get("end_ip", "")


def ensure_network(subnet: str) -> None:
    """The lab network on `subnet`, laid out as network_layout says."""
    dynamic, _ = network_layout(subnet)
    network = ipaddress.ip_network(dynamic)
    wanted = (subnet, str(network.network_address + 1), str(network.broadcast_address))
    current = network_state()
    if current == wanted:
        return
    if current is not None:
        log(f"network {NETWORK} is {current}, the inventory wants {wanted}: recreating it")
        names = [c["Names"][0] for c in lab_containers()]
        if names:
            podman("rm", "-f", "-t", "0", *names)
        for name in names:
            ready_marker(name).unlink(missing_ok=True)
        podman("network", "rm", "-f", NETWORK)
    podman(
        "network", "create", "--label", f"{LABEL}=1", "--subnet", subnet, "--ip-range", dynamic,
        NETWORK,
    )  # fmt: skip


def guard_rules(subnet: str) -> str:
    """nftables for the controller: nothing from the lab network leaves it.

    Lab hosts stand for an air-gapped site: every artifact and package comes from the lab's
    mirror. A forward-hook chain that runs before podman's own rules drops whatever a lab
    host sends past the lab network (the counter shows attempts); the controller still
    reaches the hosts through their published loopback ports (that traffic is not
    forwarded), and hosts still talk to each other on the bridge.
    """
    return (
        f"table inet {GUARD_TABLE} {{}}\n"
        f"delete table inet {GUARD_TABLE}\n"
        f"table inet {GUARD_TABLE} {{\n"
        "  chain egress {\n"
        "    type filter hook forward priority filter - 10; policy accept;\n"
        f"    ip saddr {subnet} ip daddr != {subnet} counter drop\n"
        "  }\n"
        "}\n"
    )


def ensure_guard(subnet: str) -> None:
    result = run(["nft", "-f", "-"], check=False, input=guard_rules(subnet))
    if result.returncode != 0:
        raise LabError(
            f"could not keep the lab inside its network (nft: {result.stderr.strip()}); the "
            "lab needs root and nftables on this machine"
        )


def remove_guard() -> None:
    if shutil.which("nft"):
        run(["nft", "delete", "table", "inet", GUARD_TABLE], check=False)
