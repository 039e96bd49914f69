"""fleet_tls_state: one read tells whether a host's fleet key and certificate need fleet_tls's
chain of steps (module_utils/fleet_tls_state.py, modules/fleet_tls_state.py).

The decision is one-sided: every difference the chain would mend must be seen here, or a
no-op converge would skip a repair. Each test below changes one thing of a settled host's
material and expects a problem; test_fleet_tls_settled.py checks, with the role itself, that
what the chain makes is settled and that a repair follows each problem."""

from __future__ import annotations

import datetime
import ipaddress
import os
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from ollama_module_testing import run

from ansible_collections.localllm.fleet.plugins.module_utils import fleet_tls_state as state

NOW = datetime.datetime.now(state.UTC)
SANS = ["DNS:gpu01", "IP:10.0.0.11"]


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def make_ca(key=None, common_name: str = "localllm.fleet CA", ski: bool = True):
    key = key or ec.generate_private_key(ec.SECP384R1())
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(_name(common_name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - datetime.timedelta(days=1))
        .not_valid_after(NOW + datetime.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
    )
    if ski:
        builder = builder.add_extension(
            x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False
        )
    algorithm = None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    return key, builder.sign(key, algorithm)


def host_extensions(sans=SANS):
    return [
        (x509.SubjectAlternativeName([state._general_name(san) for san in sans]), False),
        (x509.BasicConstraints(ca=False, path_length=None), True),
        (
            x509.KeyUsage(True, False, False, False, True, False, False, False, False),
            True,
        ),
        (
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            False,
        ),
    ]


def make_cert(
    ca_key,
    ca_cert,
    host_key,
    *,
    common_name="gpu01",
    extensions=None,
    days=365,
    issuer=None,
    ski=True,
    aki=True,
    start=None,
):
    """A host certificate as the ownca provider writes it (SKI, then AKI from the CA's SKI)."""
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(issuer or ca_cert.subject)
        .public_key(host_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start or NOW - datetime.timedelta(minutes=5))
        .not_valid_after((start or NOW) + datetime.timedelta(days=days))
    )
    for value, critical in host_extensions() if extensions is None else extensions:
        builder = builder.add_extension(value, critical=critical)
    if ski:
        builder = builder.add_extension(
            x509.SubjectKeyIdentifier.from_public_key(host_key.public_key()), critical=False
        )
    if aki:
        builder = builder.add_extension(state._authority_key_identifier(ca_cert), critical=False)
    algorithm = None if isinstance(ca_key, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    return builder.sign(ca_key, algorithm)


def pem(obj) -> bytes:
    if isinstance(obj, x509.Certificate):
        return obj.public_bytes(serialization.Encoding.PEM)
    return obj.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


@pytest.fixture(scope="module")
def pki():
    ca_key, ca_cert = make_ca()
    host_key = ec.generate_private_key(ec.SECP256R1())
    return ca_key, ca_cert, host_key, make_cert(ca_key, ca_cert, host_key)


def problems(cert, ca_cert, host_key, *, common_name="gpu01", sans=SANS, days=30):
    return state.certificate_problems(
        pem(cert),
        pem(ca_cert),
        host_key,
        common_name=common_name,
        subject_alt_names=sans,
        renew_at=NOW + datetime.timedelta(days=days),
    )


# -- the certificate ----------------------------------------------------------------------


def test_the_certificate_the_chain_makes_is_settled(pki):
    _, ca_cert, host_key, cert = pki
    assert problems(cert, ca_cert, host_key) == []


@pytest.mark.parametrize("ca_kind", ["rsa", "ed25519", "ec-without-ski"])
def test_an_operators_own_ca_of_another_kind_is_verified_too(ca_kind):
    if ca_kind == "rsa":
        ca_key, ca_cert = make_ca(rsa.generate_private_key(public_exponent=65537, key_size=2048))
    elif ca_kind == "ed25519":
        ca_key, ca_cert = make_ca(ed25519.Ed25519PrivateKey.generate())
    else:
        ca_key, ca_cert = make_ca(ski=False)
    host_key = ec.generate_private_key(ec.SECP256R1())
    assert problems(make_cert(ca_key, ca_cert, host_key), ca_cert, host_key) == []


def test_a_certificate_inside_the_renewal_window_must_be_renewed(pki):
    ca_key, ca_cert, host_key, _ = pki
    cert = make_cert(ca_key, ca_cert, host_key, days=20)
    assert problems(cert, ca_cert, host_key, days=30) == [
        f"host.crt is not valid at {NOW + datetime.timedelta(days=30):%Y-%m-%d} (renewal window)"
    ]
    assert problems(cert, ca_cert, host_key, days=10) == []


def test_a_certificate_not_yet_valid_at_the_renewal_point_is_not_settled(pki):
    ca_key, ca_cert, host_key, _ = pki
    cert = make_cert(ca_key, ca_cert, host_key, start=NOW + datetime.timedelta(days=60))
    assert "renewal window" in problems(cert, ca_cert, host_key, days=30)[0]


def test_a_certificate_from_another_ca_with_the_same_name_is_not_settled(pki):
    _, ca_cert, host_key, _ = pki
    impostor_key, impostor = make_ca()  # the same subject, another key
    assert impostor.subject == ca_cert.subject
    cert = make_cert(impostor_key, impostor, host_key)
    found = problems(cert, ca_cert, host_key)
    assert "host.crt is not signed by the fleet CA" in found
    assert "host.crt's authority key identifier is not the fleet CA's" in found


def test_a_certificate_naming_another_issuer_is_not_settled(pki):
    ca_key, ca_cert, host_key, _ = pki
    cert = make_cert(ca_key, ca_cert, host_key, issuer=_name("someone else"))
    assert problems(cert, ca_cert, host_key) == ["host.crt is not signed by the fleet CA"]


def test_a_certificate_for_another_key_is_not_settled(pki):
    ca_key, ca_cert, host_key, _ = pki
    other = ec.generate_private_key(ec.SECP256R1())
    cert = make_cert(ca_key, ca_cert, other)
    assert problems(cert, ca_cert, host_key) == ["host.crt is not for host.key"]
    assert problems(cert, ca_cert, None) == ["host.crt is not for host.key"]


def test_a_certificate_for_another_host_name_is_not_settled(pki):
    _, ca_cert, host_key, cert = pki
    assert problems(cert, ca_cert, host_key, common_name="gpu02") == [
        "host.crt names 'CN=gpu01', not CN=gpu02"
    ]


@pytest.mark.parametrize(
    "sans",
    [
        ["DNS:gpu01"],  # a name dropped from the inventory
        ["DNS:gpu01", "IP:10.0.0.11", "DNS:gpu01.example.com"],  # a name added
        ["IP:10.0.0.11", "DNS:gpu01"],  # the CSR would list them in another order
        ["DNS:gpu01", "IP:10.0.0.12"],  # a new address
    ],
)
def test_changed_names_are_not_settled(pki, sans):
    _, ca_cert, host_key, cert = pki
    assert problems(cert, ca_cert, host_key, sans=sans) == [
        "host.crt's names or key usages differ from the request's"
    ]


def _without(kind):
    return [
        (value, critical) for value, critical in host_extensions() if not isinstance(value, kind)
    ]


@pytest.mark.parametrize(
    "extensions",
    [
        _without(x509.ExtendedKeyUsage),
        _without(x509.KeyUsage),
        [
            (x509.BasicConstraints(ca=True, path_length=None), True),
            *_without(x509.BasicConstraints),
        ],
        # the same usages, not critical
        [
            (x509.KeyUsage(True, False, False, False, True, False, False, False, False), False),
            *_without(x509.KeyUsage),
        ],
        # one more extension than the CSR asks for
        [*host_extensions(), (x509.OCSPNoCheck(), False)],
        [
            (x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False),
            *_without(x509.ExtendedKeyUsage),
        ],
    ],
    ids=["no-eku", "no-key-usage", "ca-true", "usage-not-critical", "extra", "server-only"],
)
def test_other_usages_or_extensions_are_not_settled(pki, extensions):
    ca_key, ca_cert, host_key, _ = pki
    cert = make_cert(ca_key, ca_cert, host_key, extensions=extensions)
    assert problems(cert, ca_cert, host_key) == [
        "host.crt's names or key usages differ from the request's"
    ]


def test_missing_key_identifiers_are_not_settled(pki):
    ca_key, ca_cert, host_key, _ = pki
    assert problems(make_cert(ca_key, ca_cert, host_key, ski=False), ca_cert, host_key) == [
        "host.crt's subject key identifier is not its key's"
    ]
    assert problems(make_cert(ca_key, ca_cert, host_key, aki=False), ca_cert, host_key) == [
        "host.crt's authority key identifier is not the fleet CA's"
    ]


@pytest.mark.parametrize(
    "content",
    [b"", b"not a certificate", b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"],
)
def test_a_damaged_certificate_is_not_settled(pki, content):
    _, ca_cert, host_key, _ = pki
    found = state.certificate_problems(
        content, pem(ca_cert), host_key, common_name="gpu01", subject_alt_names=SANS, renew_at=NOW
    )
    assert len(found) == 1 and found[0].startswith("host.crt is not a PEM certificate")


def test_a_name_of_a_kind_the_role_never_writes_is_not_settled(pki):
    _, ca_cert, host_key, cert = pki
    assert problems(cert, ca_cert, host_key, sans=["email:ops@example.com"]) == [
        "subjectAltName 'email:ops@example.com' is not DNS:name or IP:address"
    ]


def test_what_cannot_be_checked_is_a_problem_not_an_error(pki):
    _, ca_cert, _, cert = pki
    found = problems(cert, ca_cert, object())
    assert found == [
        "host.crt cannot be checked (AttributeError: 'object' object has no attribute 'public_key')"
    ]
    # A name too long for a certificate: cryptography 42 refuses it, 3.3 only warns (then
    # the names differ); either way the host is not settled and nothing is raised.
    found = problems(cert, ca_cert, pki[2], common_name="x" * 70)
    assert len(found) == 1, found
    assert found[0].startswith(("host.crt cannot be checked (ValueError", "host.crt names ")), found


def test_ipv6_names_compare_as_addresses(pki):
    ca_key, ca_cert, host_key, _ = pki
    sans = ["DNS:gpu01", "IP:fd00::11"]
    extensions = [
        (
            x509.SubjectAlternativeName(
                [x509.DNSName("gpu01"), x509.IPAddress(ipaddress.ip_address("fd00:0::11"))]
            ),
            False,
        ),
        *_without(x509.SubjectAlternativeName),
    ]
    cert = make_cert(ca_key, ca_cert, host_key, extensions=extensions)
    assert problems(cert, ca_cert, host_key, sans=sans) == []


# -- the key ------------------------------------------------------------------------------


def test_the_roles_key_is_settled(pki):
    _, _, host_key, _ = pki
    found, key = state.key_problems(pem(host_key))
    assert (
        found == [] and key.public_key().public_numbers() == host_key.public_key().public_numbers()
    )


@pytest.mark.parametrize(
    "make, says",
    [
        (
            lambda: ec.generate_private_key(ec.SECP384R1()),
            "host.key is on curve secp384r1, not secp256r1",
        ),
        (
            lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048),
            "host.key is not an ECDSA key",
        ),
        (ed25519.Ed25519PrivateKey.generate, "host.key is not an ECDSA key"),
    ],
    ids=["p384", "rsa", "ed25519"],
)
def test_a_key_of_another_type_is_not_settled(make, says):
    found, key = state.key_problems(pem(make()))
    assert key is None and len(found) == 1 and found[0].startswith(says)


def test_an_encrypted_or_damaged_key_is_not_settled(pki):
    _, _, host_key, _ = pki
    encrypted = host_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"a passphrase"),
    )
    found, key = state.key_problems(encrypted)
    assert (found, key) == (["host.key is encrypted (the role's key has no passphrase)"], None)
    for content in (b"", b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"):
        found, key = state.key_problems(content)
        assert key is None and found == ["host.key cannot be loaded (ValueError)"], content


# -- files and packages -------------------------------------------------------------------


@pytest.mark.parametrize(
    "seen, says",
    [
        (None, ["x is missing"]),
        ({"kind": "link", "mode": 0o777, "uid": 0, "gid": 0}, ["x is a link, not a file"]),
        ({"kind": "file", "mode": 0o640, "uid": 0, "gid": 0}, ["x has mode 0640, not 0644"]),
        (
            {"kind": "file", "mode": 0o644, "uid": 1000, "gid": 0},
            ["x is owned by 1000:0, not root:root"],
        ),
        (
            {"kind": "file", "mode": 0o666, "uid": 0, "gid": 5},
            ["x has mode 0666, not 0644", "x is owned by 0:5, not root:root"],
        ),
        ({"kind": "file", "mode": 0o644, "uid": 0, "gid": 0}, []),
    ],
)
def test_file_problems(seen, says):
    assert state.file_problems("x", seen, "file", 0o644) == says


def test_a_directory_that_is_another_kind_is_named_as_such():
    seen = {"kind": "other", "mode": 0o755, "uid": 0, "gid": 0}
    assert state.file_problems("/etc/x", seen, "dir", 0o755) == [
        "/etc/x is a special file, not a directory"
    ]


def test_lstat_summary_does_not_follow_links(tmp_path):
    import socket

    from ansible_collections.localllm.fleet.plugins.module_utils.path_state import lstat_summary

    (tmp_path / "f").write_text("abc")
    (tmp_path / "f").chmod(0o644)
    (tmp_path / "l").symlink_to("f")
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(tmp_path / "s"))
    try:
        kinds = {name: lstat_summary(str(tmp_path / name)) for name in ("f", "l", "s", "absent")}
    finally:
        listener.close()
    assert kinds["f"] == {"kind": "file", "mode": 0o644, "uid": os.getuid(), "gid": os.getgid()}
    assert kinds["l"]["kind"] == "link" and kinds["l"]["target"] == "f"
    assert kinds["s"]["kind"] == "other"
    assert kinds["absent"] is None
    assert lstat_summary(str(tmp_path))["kind"] == "dir"


def test_package_problems():
    assert state.package_problems(["a", "b", "c"], {"a"}) == [
        "package b is not installed",
        "package c is not installed",
    ]


# -- the module on a directory ------------------------------------------------------------


@pytest.fixture
def host_dir(tmp_path, pki):
    """A TLS directory as the chain leaves it (the tests run as root, as CI does)."""
    if os.geteuid() != 0:
        pytest.skip("the files are root's on a host; run as root")
    _, ca_cert, host_key, cert = pki
    tls = tmp_path / "tls"
    tls.mkdir(mode=0o755)
    tls.chmod(0o755)
    for name, content, mode in (
        ("ca.pem", pem(ca_cert).decode().strip() + "\n", 0o644),
        ("host.key", pem(host_key).decode(), 0o600),
        ("host.crt", pem(cert).decode(), 0o644),
    ):
        (tls / name).write_text(content)
        (tls / name).chmod(mode)
    return tls


def module_args(tls: Path, ca_cert, **extra):
    return {
        "path": str(tls),
        "ca_pem": pem(ca_cert).decode().strip(),
        "common_name": "gpu01",
        "subject_alt_names": SANS,
        "renew_before_days": 30,
        **extra,
    }


def test_the_module_finds_a_settled_host(host_dir, pki):
    result = run("fleet_tls_state", module_args(host_dir, pki[1]), check=True)
    assert result == {**result, "changed": False, "settled": True, "problems": []}


def test_the_module_names_each_problem_and_returns_no_key_material(host_dir, pki):
    (host_dir / "host.key").chmod(0o644)
    (host_dir / "ca.pem").write_text("something else\n")
    (host_dir / "ca.pem").chmod(0o644)
    result = run("fleet_tls_state", module_args(host_dir, pki[1], force=True))
    assert result["settled"] is False
    assert result["problems"] == [
        "a renewal was asked for (fleet_tls_force_renew)",
        "host.key has mode 0644, not 0600",
        "ca.pem is not the fleet CA certificate",
    ]
    key_body = pem(pki[2]).decode().splitlines()[1]
    assert key_body not in repr(result)


def test_the_module_on_a_fresh_host(tmp_path, pki):
    result = run("fleet_tls_state", module_args(tmp_path / "absent", pki[1]))
    assert result["settled"] is False
    assert result["problems"] == [
        f"{tmp_path / 'absent'} is missing",
        "ca.pem is missing",
        "host.key is missing",
        "host.crt is missing",
    ]


def test_the_module_before_the_ca_exists(host_dir, pki):
    args = module_args(host_dir, pki[1])
    del args["ca_pem"]
    assert run("fleet_tls_state", args)["problems"] == ["no fleet CA certificate to compare with"]


def test_the_module_does_not_read_a_huge_or_linked_file(host_dir, pki):
    (host_dir / "host.crt").write_bytes(b"x" * (state.MAX_FILE_BYTES + 1))
    (host_dir / "host.key").unlink()
    (host_dir / "host.key").symlink_to("/etc/shadow")
    result = run("fleet_tls_state", module_args(host_dir, pki[1]))
    assert result["problems"] == [
        "host.key is a link, not a file",
        f"host.crt is larger than {state.MAX_FILE_BYTES} bytes",
    ]


def _fake_dpkg_query(tmp_path, monkeypatch, out: str, rc: int) -> None:
    bindir = tmp_path / "fakebin"
    bindir.mkdir()
    script = bindir / "dpkg-query"
    script.write_text(f"#!/bin/sh\ncat <<'EOF'\n{out}\nEOF\nexit {rc}\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{bindir}:{os.environ['PATH']}")


def test_the_module_reads_the_packages_from_dpkg(host_dir, pki, tmp_path, monkeypatch):
    # dpkg-query exits 1 when it knows a name not at all; what it printed still counts.
    # Installed as the driver role counts it (nvidia_driver.installed_packages): any state
    # but not-installed and config-files, a half-configured package too.
    _fake_dpkg_query(
        tmp_path,
        monkeypatch,
        "ii \tpython3-cryptography\t38.0.4-3\tamd64\nrc \topenssl\t3.0.11\tamd64\n"
        "iF \tlibssl3\t3.0.11\tamd64",
        1,
    )
    wanted = ["python3-cryptography", "openssl", "libssl3", "absent"]
    result = run("fleet_tls_state", module_args(host_dir, pki[1], packages=wanted))
    assert result["problems"] == [
        "package openssl is not installed",
        "package absent is not installed",
    ]


def test_a_dpkg_listing_of_another_shape_is_a_problem(host_dir, pki, tmp_path, monkeypatch):
    _fake_dpkg_query(tmp_path, monkeypatch, "ii \tpython3-cryptography", 0)
    result = run("fleet_tls_state", module_args(host_dir, pki[1], packages=["x"]))
    assert result["settled"] is False
    assert result["problems"][0].startswith("line 1 of the installed-package list"), result
