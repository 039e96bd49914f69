# Copyright (c) localllm.fleet contributors
# Apache License 2.0 (see galaxy.yml)
"""Whether a host's TLS material is what fleet_tls's steps would leave, from one read.

fleet_tls makes a host's key and certificate in a chain of steps (package, directory, CA
certificate, key, CSR, signature on the control node, certificate), one round trip each; on
a converged host every one of them answers "ok". The fleet_tls_state module reads the
material once and these functions decide whether the chain has anything to do. The decision
is one-sided: the material is settled only when every check below holds, and anything that
differs, cannot be read or cannot be told (an unknown key type, a name of a kind the role
does not write) is a problem, so that the chain runs. The chain, community.crypto's
modules, stays the only code that makes or changes anything.

The checks follow what those modules compare (community.crypto's openssl_privatekey,
openssl_csr_pipe, x509_certificate_pipe with the ownca provider, x509_certificate_info):
the key's type and curve; the certificate's public key, subject, extensions (minus the key
identifiers, which are checked against their keys), issuer and signature; the renewal
window. A certificate's lifetime is not compared (ownca ignores timestamps by default).

Functions take what was read (bytes, `lstat` summaries) and return problems as sentences:
no file access, no secret in any return value.
"""

from __future__ import annotations

import datetime
import functools
import ipaddress
from collections.abc import Callable, Container, Mapping, Sequence
from typing import Any

# Imported here, not by the module: without the library on a host nothing can be checked and
# the chain runs (it installs python3-cryptography first).
try:
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, padding, rsa
    from cryptography.hazmat.primitives.serialization import (
        Encoding,
        PublicFormat,
        load_pem_private_key,
    )
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    HAS_CRYPTOGRAPHY = True
except ImportError:
    HAS_CRYPTOGRAPHY = False

__all__ = [
    "CERT_MODE",
    "DIR_MODE",
    "HAS_CRYPTOGRAPHY",
    "KEY_MODE",
    "MAX_FILE_BYTES",
    "UTC",
    "certificate_problems",
    "file_problems",
    "key_problems",
    "package_problems",
]

DIR_MODE = 0o755
CERT_MODE = 0o644  # ca.pem and host.crt
KEY_MODE = 0o600
# A fleet key, CA bundle or certificate is a few KB; anything far larger is not one of ours
# and is not read.
MAX_FILE_BYTES = 1 << 20
KEY_CURVE = "secp256r1"
UTC = datetime.timezone.utc  # noqa: UP017 - datetime.UTC is 3.11+; this runs on 3.9 hosts


_KIND_NAMES = {"dir": "directory", "file": "file", "link": "link", "other": "special file"}


def file_problems(name: str, seen: Mapping[str, Any] | None, kind: str, mode: int) -> list[str]:
    """How a path's lstat summary (path_state.lstat_summary: kind, mode, uid, gid) differs
    from a root-owned `kind` (`dir` or `file`) with `mode`."""
    if seen is None:
        return [f"{name} is missing"]
    if seen.get("kind") != kind:
        found = _KIND_NAMES.get(str(seen.get("kind")), str(seen.get("kind")))
        return [f"{name} is a {found}, not a {_KIND_NAMES.get(kind, kind)}"]
    problems = []
    if seen.get("mode") != mode:
        problems.append(f"{name} has mode {int(seen.get('mode', 0)):04o}, not {mode:04o}")
    if seen.get("uid") != 0 or seen.get("gid") != 0:
        problems.append(f"{name} is owned by {seen.get('uid')}:{seen.get('gid')}, not root:root")
    return problems


def package_problems(wanted: Sequence[str], installed: Container[str]) -> list[str]:
    """The packages of `wanted` that are not among the `installed` names."""
    return [f"package {name} is not installed" for name in wanted if name not in installed]


def key_problems(key_pem: bytes) -> tuple[list[str], Any]:
    """Problems of the host's private key, and the loaded key (None when it cannot be used).

    The role makes an unencrypted ECDSA key on P-256; openssl_privatekey replaces any other.
    """
    try:
        key = load_pem_private_key(key_pem, password=None)
    except TypeError:
        return ["host.key is encrypted (the role's key has no passphrase)"], None
    except Exception as exc:
        return [f"host.key cannot be loaded ({type(exc).__name__})"], None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        return [f"host.key is not an ECDSA key ({type(key).__name__})"], None
    if key.curve.name != KEY_CURVE:
        return [f"host.key is on curve {key.curve.name}, not {KEY_CURVE}"], None
    return [], key


def _public_der(public_key: Any) -> bytes:
    return public_key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)


def _general_name(san: str) -> Any:
    """`DNS:x` or `IP:y` as the CSR step writes it; ValueError for anything else."""
    kind, _, value = str(san).partition(":")
    if kind == "DNS" and value:
        return x509.DNSName(value)
    if kind == "IP" and value:
        return x509.IPAddress(ipaddress.ip_address(value.strip("[]")))
    raise ValueError(f"subjectAltName {san!r} is not DNS:name or IP:address")


def _expected_extensions(subject_alt_names: Sequence[str]) -> dict:
    """The extensions chain.yml's CSR asks for, by OID (subject_alt_names in its order)."""
    values = [
        (x509.SubjectAlternativeName([_general_name(san) for san in subject_alt_names]), False),
        (x509.BasicConstraints(ca=False, path_length=None), True),
        (
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=True,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            True,
        ),
        (
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            False,
        ),
    ]
    return {value.oid: x509.Extension(value.oid, critical, value) for value, critical in values}


def _signed_by(certificate: Any, public_key: Any) -> bool:
    """Whether `public_key` made `certificate`'s signature (RSA PKCS#1 v1.5, ECDSA, EdDSA).

    Any other scheme (RSA-PSS among them) counts as not verified: the chain then checks it.
    """
    signature, data = certificate.signature, certificate.tbs_certificate_bytes
    try:
        if isinstance(public_key, rsa.RSAPublicKey):
            public_key.verify(
                signature, data, padding.PKCS1v15(), certificate.signature_hash_algorithm
            )
        elif isinstance(public_key, ec.EllipticCurvePublicKey):
            public_key.verify(signature, data, ec.ECDSA(certificate.signature_hash_algorithm))
        elif isinstance(public_key, (ed25519.Ed25519PublicKey, ed448.Ed448PublicKey)):
            public_key.verify(signature, data)
        else:
            return False
    except Exception:
        return False
    return True


def _utc(certificate: Any, which: str) -> datetime.datetime:
    """not_valid_before/after as an aware UTC datetime (cryptography before 42 has naive ones)."""
    aware = getattr(certificate, f"{which}_utc", None)
    if aware is not None:
        return aware
    return getattr(certificate, which).replace(tzinfo=UTC)


def _problem_when_it_raises(check: Callable[..., list[str]]) -> Callable[..., list[str]]:
    """Whatever the library cannot handle (a key of a kind it does not know, a name too long
    for a certificate) is a problem, not an error: the chain then decides."""

    @functools.wraps(check)
    def checked(*args: Any, **kwargs: Any) -> list[str]:
        try:
            return check(*args, **kwargs)
        except Exception as exc:
            return [f"host.crt cannot be checked ({type(exc).__name__}: {exc})"]

    return checked


@_problem_when_it_raises
def certificate_problems(
    cert_pem: bytes,
    ca_pem: bytes,
    host_key: Any,
    *,
    common_name: str,
    subject_alt_names: Sequence[str],
    renew_at: datetime.datetime,
) -> list[str]:
    """Why host.crt is not the certificate the chain would keep (empty when it would).

    `host_key` is the loaded private key (key_problems); `renew_at` the moment the
    certificate must still be valid at (now plus fleet_tls_renew_before_days).
    """
    try:
        certificate = x509.load_pem_x509_certificate(cert_pem)
    except Exception as exc:
        return [f"host.crt is not a PEM certificate ({type(exc).__name__})"]
    try:
        ca = x509.load_pem_x509_certificate(ca_pem)
    except Exception as exc:
        return [f"the fleet CA certificate given cannot be read ({type(exc).__name__})"]
    try:
        expected = _expected_extensions(subject_alt_names)
    except ValueError as exc:
        return [str(exc)]

    problems = []
    if not (
        _utc(certificate, "not_valid_before") <= renew_at <= _utc(certificate, "not_valid_after")
    ):
        problems.append(f"host.crt is not valid at {renew_at:%Y-%m-%d} (renewal window)")
    public_key = certificate.public_key()
    if host_key is None or _public_der(public_key) != _public_der(host_key.public_key()):
        problems.append("host.crt is not for host.key")
    wanted_subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, str(common_name))])
    if certificate.subject != wanted_subject:
        problems.append(
            f"host.crt names {certificate.subject.rfc4514_string()!r}, not CN={common_name}"
        )
    if certificate.issuer != ca.subject or not _signed_by(certificate, ca.public_key()):
        problems.append("host.crt is not signed by the fleet CA")

    try:
        extensions = list(certificate.extensions)
    except Exception as exc:
        return [*problems, f"host.crt's extensions cannot be read ({type(exc).__name__})"]
    identifiers = (x509.SubjectKeyIdentifier, x509.AuthorityKeyIdentifier)
    found = {ext.oid: ext for ext in extensions if not isinstance(ext.value, identifiers)}
    if found != expected:
        problems.append("host.crt's names or key usages differ from the request's")
    ski = [ext.value for ext in extensions if isinstance(ext.value, x509.SubjectKeyIdentifier)]
    if ski != [x509.SubjectKeyIdentifier.from_public_key(public_key)]:
        problems.append("host.crt's subject key identifier is not its key's")
    aki = [ext.value for ext in extensions if isinstance(ext.value, x509.AuthorityKeyIdentifier)]
    if aki != [_authority_key_identifier(ca)]:
        problems.append("host.crt's authority key identifier is not the fleet CA's")
    return problems


def _authority_key_identifier(ca: Any) -> Any:
    """The AKI the ownca provider writes: from the CA's SKI, else from its public key."""
    try:
        ski = ca.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    except x509.ExtensionNotFound:
        return x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.public_key())
    return x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski)
