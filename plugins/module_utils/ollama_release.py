"""Ollama release artifacts: names, formats, versions and upstream's sha256sum.txt.

Pure functions shared by the ollama role (through filter plugins) and its tests. Facts from
shared/reference/ollama.md: releases v0.14.0 and newer ship `ollama-linux-<arch>.tar.zst`,
older ones `.tgz`; each release carries `sha256sum.txt` with `<hex>  ./<artifact>` lines.
"""

from __future__ import annotations

import ipaddress
import re

_VERSION = re.compile(r"^v?([0-9]{1,9})\.([0-9]{1,9})\.([0-9]{1,9})(?:-rc([0-9]{1,9}))?$")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_ARCH = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}
_VARIANTS = ("", "rocm", "jetpack5", "jetpack6")
FIRST_ZSTD_RELEASE = (0, 14, 0)


class ReleaseError(ValueError):
    """Bad input about a release, with a message an operator can act on."""


def parse_version(version: str) -> tuple[int, int, int, int]:
    """`0.32.15` -> (0, 32, 15, 0); release candidates sort before their release."""
    match = _VERSION.match(str(version).strip())
    if not match:
        raise ReleaseError(
            f"ollama_version {version!r} is not a release version: expected X.Y.Z "
            "(optionally -rcN), e.g. 0.32.15"
        )
    major, minor, patch, rc = match.groups()
    return int(major), int(minor), int(patch), int(rc) if rc else 1 << 30


def normalize_version(version: str) -> str:
    """The version as Ollama reports it (`ollama version is 0.32.15`): no leading `v`."""
    parse_version(version)
    return str(version).strip().lstrip("v")


def go_arch(machine: str) -> str:
    try:
        return _ARCH[machine]
    except KeyError:
        raise ReleaseError(
            f"architecture {machine!r} has no Ollama Linux release (amd64 and arm64 only)"
        ) from None


def artifact_format(version: str, requested: str = "auto") -> str:
    """`tar.zst` for v0.14.0 and newer, `tgz` before, unless the operator chose one."""
    if requested in ("tar.zst", "tgz"):
        return requested
    if requested != "auto":
        raise ReleaseError(
            f"ollama_artifact_format must be auto, tar.zst or tgz, not {requested!r}"
        )
    return "tar.zst" if parse_version(version)[:3] >= FIRST_ZSTD_RELEASE else "tgz"


def artifact_name(machine: str, variant: str = "", fmt: str = "tar.zst") -> str:
    """`ollama-linux-amd64.tar.zst`, `ollama-linux-amd64-rocm.tgz`, ..."""
    if variant not in _VARIANTS:
        raise ReleaseError(f"unknown Ollama build variant {variant!r}; one of {_VARIANTS[1:]}")
    suffix = f"-{variant}" if variant else ""
    return f"ollama-linux-{go_arch(machine)}{suffix}.{fmt}"


def release_url(base_url: str, version: str, name: str) -> str:
    """GitHub's release layout, which internal mirrors copy: `<base>/v<version>/<name>`."""
    return f"{base_url.rstrip('/')}/v{normalize_version(version)}/{name}"


def checksum_for(sha256sum_text: str, name: str) -> str:
    """The hex digest for `name` in a sha256sum.txt (`<hex>  ./<name>` or `<hex> *name`)."""
    for line in str(sha256sum_text).splitlines():
        parts = line.strip().split()
        if len(parts) != 2:
            continue
        digest, path = parts
        path = path.lstrip("*")
        if path.removeprefix("./") == name:
            digest = digest.lower()
            if not _HEX64.match(digest):
                raise ReleaseError(f"sha256sum.txt lists {name} with a malformed digest {digest!r}")
            return digest
    raise ReleaseError(f"sha256sum.txt has no entry for {name}")


def valid_sha256(value: str) -> str:
    digest = str(value).strip().lower().removeprefix("sha256:")
    if not _HEX64.match(digest):
        raise ReleaseError(f"{value!r} is not a sha256 digest (64 hex characters)")
    return digest


def client_version(output: str) -> str | None:
    """The binary's own version from `ollama -v` run with no server to answer.

    Upstream prints `Warning: client version is X` when the server is unreachable or runs
    another version, and `ollama version is X` when a server of the same version answers.
    """
    for pattern in (r"client version is (\S+)", r"ollama version is (\S+)"):
        match = re.search(pattern, str(output))
        if match:
            return match.group(1)
    return None


def api_base(host: str) -> str:
    """The URL a client on the host uses for the server bound at OLLAMA_HOST.

    Parsed as Ollama's envconfig.Host: `[scheme://]host[:port][/path]`, the port defaulting
    to 80 for `http://`, 443 for `https://` and 11434 without a scheme, an empty or invalid
    port to that default, the path dropped. `0.0.0.0` / `::` (or no address) bind every
    address; the host reaches itself through loopback.
    """
    value = str(host).strip().strip("\"'").strip()  # envconfig.Var, then Host's TrimSpace
    default_port = "11434"
    if "://" in value:
        scheme, value = value.split("://", 1)
        default_port = {"http": "80", "https": "443"}.get(scheme, default_port)
    else:
        scheme = "http"
        if value == "ollama.com":
            scheme, value = "https", "ollama.com:443"
    value = value.partition("/")[0]
    if value.startswith("[") and "]:" in value:
        address, _, port = value[1:].partition("]:")
    elif value.count(":") == 1:
        address, port = value.split(":")
    else:  # no port (a name, an IPv4 or IPv6 address, bracketed or not)
        address, port = value.strip("[]"), default_port
        try:
            address = str(ipaddress.ip_address(address))
        except ValueError:
            address = value or "127.0.0.1"
    if not re.fullmatch(r"[+-]?[0-9]{1,6}", port) or not 0 <= int(port) <= 65535:
        port = default_port
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        address = address or "127.0.0.1"
    else:
        if ip.is_unspecified:
            address = "127.0.0.1" if ip.version == 4 else "::1"
    if ":" in address:
        address = f"[{address}]"
    return f"{scheme}://{address}:{port}"
