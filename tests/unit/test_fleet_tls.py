"""Which names a fleet host's certificate carries (module_utils/fleet_tls.py)."""

from __future__ import annotations

import pytest

from ansible_collections.localllm.fleet.plugins.module_utils.fleet_tls import (
    TlsNameError,
    host_address_kind,
    subject_alt_names,
)


def test_inventory_name_and_fleet_address_loopback_left_out():
    sans = subject_alt_names(["h100x8", "127.0.0.1", "10.89.42.11"])
    assert sans == ["DNS:h100x8", "IP:10.89.42.11"]


def test_duplicates_and_case_and_trailing_dots_fold():
    sans = subject_alt_names(["GPU1.Example.com.", "gpu1.example.com", "10.0.0.1", "10.0.0.1"])
    assert sans == ["DNS:gpu1.example.com", "IP:10.0.0.1"]


def test_ipv6_addresses_are_ip_sans_in_canonical_form():
    assert subject_alt_names(["[2001:db8::0001]"]) == ["IP:2001:db8::1"]


def test_extra_sans_keep_loopback_when_asked_for():
    sans = subject_alt_names(["gw1"], ["IP:127.0.0.1", "DNS:localhost", "api.example.com"])
    assert sans == ["DNS:gw1", "IP:127.0.0.1", "DNS:localhost", "DNS:api.example.com"]


def test_empty_values_are_skipped():
    assert subject_alt_names(["", None, "  ", "edge1"]) == ["DNS:edge1"]


@pytest.mark.parametrize(
    "bad",
    ["bad name", "under_score.example", "-lead.example", "a" * 64 + ".example", "x/y", "é.example"],
)
def test_names_that_cannot_be_in_a_certificate_are_refused_naming_the_host(bad):
    with pytest.raises(TlsNameError, match=r"neither an IP address nor a valid DNS name.*host h1"):
        subject_alt_names([bad], host="h1")


def test_an_extra_san_whose_prefix_does_not_fit_is_refused():
    with pytest.raises(TlsNameError, match="is not an IP address"):
        subject_alt_names(["gw"], ["IP:gw.example.com"])
    with pytest.raises(TlsNameError, match="extra SAN"):
        subject_alt_names(["gw"], ["DNS:bad name"])


def test_a_host_known_only_by_loopback_names_gets_a_clear_error():
    with pytest.raises(TlsNameError, match="set fleet_host_address"):
        subject_alt_names(["localhost", "127.0.0.1", "::1"], host="lonely")


def test_address_kind():
    assert host_address_kind("10.1.2.3") == "IP"
    assert host_address_kind("fe80::1") == "IP"
    assert host_address_kind("edge-7.dc1.example") == "DNS"


def test_member_address_falls_back_like_the_role_default():
    from ansible_collections.localllm.fleet.plugins.module_utils.fleet_tls import member_address

    assert (
        member_address("h1", {"fleet_host_address": "10.0.0.7", "ansible_host": "1.2.3.4"})
        == "10.0.0.7"
    )
    assert member_address("h1", {"fleet_host_address": "", "ansible_host": "1.2.3.4"}) == "1.2.3.4"
    assert member_address("h1", {}) == "h1"
