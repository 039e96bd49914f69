"""The firewall plan: openings merged, sources checked and split by family, SSH never closed."""

from __future__ import annotations

import pytest

from ansible_collections.localllm.fleet.plugins.module_utils.fleet_firewall import (
    FirewallError,
    normalise_sources,
    plan,
    resolve_sources,
)

ADMINS = ["10.0.0.0/8"]


def test_openings_of_one_port_merge_their_sources_and_names():
    rules = plan(
        [
            {"name": "ollama_edge", "port": 11443, "sources": ["10.89.42.18", "10.89.42.18/32"]},
            {"name": "apps", "port": "11443", "proto": "tcp", "sources": ["192.168.1.0/24"]},
            {"name": "metrics", "port": 8405, "sources": ["10.89.42.30", "fd00::7"]},
        ],
        22,
        ADMINS,
        [11434],
    )
    assert rules["openings"] == [
        {
            "port": 8405,
            "proto": "tcp",
            "names": ["metrics"],
            "v4": ["10.89.42.30/32"],
            "v6": ["fd00::7/128"],
        },
        {
            "port": 11443,
            "proto": "tcp",
            "names": ["ollama_edge", "apps"],
            "v4": ["10.89.42.18/32", "192.168.1.0/24"],
            "v6": [],
        },
    ]
    assert rules["ssh"] == {"v4": ["10.0.0.0/8"], "v6": []}
    assert rules["private_ports"] == [11434]


def test_adjacent_networks_collapse():
    assert normalise_sources(["10.0.0.0/25", "10.0.0.128/25", "10.0.0.5"], "x") == {
        "v4": ["10.0.0.0/24"],
        "v6": [],
    }


def test_an_opening_without_sources_is_kept_closed():
    rules = plan([{"name": "gateway_clients", "port": 8443, "sources": []}], 22, ADMINS)
    assert rules["openings"][0]["empty"] is True


@pytest.mark.parametrize(
    ("opening", "message"),
    [
        ({"name": "x", "port": 0, "sources": []}, "port must be a number 1-65535"),
        ({"name": "x", "port": "80; drop", "sources": []}, "port must be a number"),
        ({"name": "x", "port": True, "sources": []}, "port must be a number"),
        ({"name": "x", "port": 80, "proto": "icmp", "sources": []}, "proto must be tcp or udp"),
        ({"name": "x", "port": 80, "sources": ["10.0.0.0/8; accept"]}, "not an IP address"),
        ({"name": "x", "port": 80, "sources": ["bad host name"]}, "not an IP address, a network"),
        ({"name": "x", "port": 80, "sources": "10.0.0.0/8"}, "sources must be a list"),
        ({"name": "x", "port": 80, "sources": ["any"]}, "write 0.0.0.0/0 and ::/0"),
        ({"name": 'x" accept', "port": 80, "sources": []}, "name must be letters"),
        ({"name": "x", "port": 80, "sources": [], "from": []}, "unknown keys"),
    ],
)
def test_bad_openings_are_refused_naming_them(opening, message):
    with pytest.raises(FirewallError, match=message):
        plan([opening], 22, ADMINS)


def test_a_private_port_can_never_be_opened():
    with pytest.raises(
        FirewallError, match="opening oops: port 11434 must stay reachable on loopback"
    ):
        plan([{"name": "oops", "port": 11434, "sources": ["0.0.0.0/0"]}], 22, ADMINS, [11434])


def test_ssh_is_never_closed_to_everyone():
    with pytest.raises(FirewallError, match="SSH would be closed to everyone"):
        plan([], 22, [])


def test_openings_and_ssh_sources_may_name_hosts():
    table = {"gw1.example": ["10.1.1.1"], "admin.example": ["192.0.2.9"]}
    rules = plan(
        [{"name": "edge", "port": 11443, "sources": ["gw1.example"]}],
        22,
        ["admin.example"],
        resolver=table.__getitem__,
    )
    assert rules["openings"][0]["v4"] == ["10.1.1.1/32"]
    assert rules["ssh"]["v4"] == ["192.0.2.9/32"]


def test_names_are_resolved_and_addresses_kept():
    table = {"gw1.example": ["10.1.1.1", "fd00::1"]}
    assert resolve_sources(["10.0.0.0/8", "gw1.example", "", None], "x", table.__getitem__) == [
        "10.0.0.0/8",
        "10.1.1.1",
        "fd00::1",
    ]


def test_an_unresolvable_name_is_an_error_naming_it():
    def resolver(name):
        raise OSError("Name or service not known")

    with pytest.raises(FirewallError, match=r"edge sources: cannot resolve 'gw9.example'"):
        resolve_sources(["gw9.example"], "edge sources", resolver)
