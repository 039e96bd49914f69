"""Ollama release artifacts: names, formats, versions and upstream's sha256sum.txt.

Pure functions shared by the ollama role (through filter plugins) and its tests. Facts from
upstream's releases (docs/reference/ollama.md): releases v0.14.0 and newer ship
`ollama-linux-<arch>.tar.zst`, older ones `.tgz`; each release carries `sha256sum.txt` with
`<hex>  ./<artifact>` lines.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any

_VERSION = re.compile(r"^v?([0-9]{1,9})\.([0-9]{1,9})\.([0-9]{1,9})(?:-rc([0-9]{1,9}))?$")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_ARCH = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}
_VARIANTS = ("", "rocm", "jetpack5", "jetpack6")
FIRST_ZSTD_RELEASE = (0, 14, 0)

#: The release the collection pins (roles/ollama/defaults/main.yml says the same; a unit test
#: keeps the two equal). Code that has no inventory to read a host's ollama_version from
#: (scripts/gpu-tier, gpu_tier without the variable) judges drivers against it.
PINNED_VERSION = "0.32.15"

#: The NVIDIA driver each Ollama release needs (docs/gpu.mdx at the release's tag), newest
#: first: (first release, floor for compute capability 7.0 and newer, floor for 5.0-6.x).
#: v0.9.3 dropped the CUDA 11 build (531+); v0.30.0 JIT-compiles Maxwell/Pascal code from PTX,
#: which needs 570+ (discover/cuda_compat.go); v0.30.11 ships compressed CUDA 12 fatbins,
#: which need 550+ (ollama/ollama#16895). Ollama filters a GPU whose driver is older and
#: serves on the CPU, saying so only in its log ("NVIDIA driver too old").
DRIVER_FLOORS = (
    ((0, 30, 11), 550, 570),
    ((0, 30, 0), 531, 570),
    ((0, 9, 3), 531, 531),
)


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


def driver_floor(
    ollama_version: str, compute_cap: str | None = None, architecture: str | None = None
) -> int | None:
    """The oldest NVIDIA driver branch `ollama_version` uses a GPU of `compute_cap` with.

    Without a compute capability, the GPU generation (`architecture`, e.g. from lspci's chip
    name) tells Maxwell/Pascal (5.x, 6.x) from newer GPUs. None: the release states no floor
    (before v0.9.3). A GPU of unknown generation gets the stricter floor of the two.
    """
    version = parse_version(ollama_version)[:3]
    legacy = None
    if compute_cap:
        match = re.fullmatch(r"([0-9]{1,2})\.[0-9]{1,2}", str(compute_cap).strip())
        if not match:
            raise ReleaseError(f"compute capability {compute_cap!r} is not like 8.9")
        legacy = int(match.group(1)) < 7
    elif architecture:
        legacy = str(architecture).lower() in ("kepler", "maxwell", "pascal")
    for first, modern_floor, legacy_floor in DRIVER_FLOORS:
        if version >= first:
            if legacy is None:
                return max(modern_floor, legacy_floor)
            return legacy_floor if legacy else modern_floor
    return None


def version_or_pinned(ollama_version: str | None) -> str:
    """`ollama_version`, or the collection's pinned release when it is unset."""
    return normalize_version(ollama_version) if ollama_version else PINNED_VERSION


def host_driver_floor(ollama_version: str | None, architectures: Any = None) -> int | None:
    """The driver branch a host's GPUs need for `ollama_version` (None or "": the pinned
    release): the highest floor over its GPU generations; unknown generations count as the
    strictest. None when the release states no floor."""
    version = ollama_version or PINNED_VERSION
    generations = [str(a) for a in architectures or [] if a] or [None]
    floors = [driver_floor(version, None, generation) for generation in generations]
    known = [floor for floor in floors if floor is not None]
    return max(known) if known else None


def driver_branch(driver_version: str | None) -> int | None:
    """`550.54.15` -> 550; None for a version that does not start with a branch number."""
    match = re.match(r"^\s*([0-9]{2,4})(?:\.|\s*$)", str(driver_version or ""))
    return int(match.group(1)) if match else None


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


def listener_pids(ss_output: str) -> list[str]:
    """The processes that hold a listening socket, from `ss -H -l -t -n -p` lines
    (`... users:(("ollama",pid=812,fd=3),("ollama",pid=813,fd=3))`), once each."""
    return list(dict.fromkeys(re.findall(r"\bpid=([0-9]+)", str(ss_output or ""))))


def foreign_listeners(ss_output: str, main_pid: str) -> list[str]:
    """The `ss -H -l -t -n -p` lines of sockets held by a process other than the service's
    main process (`main_pid`, systemd's MainPID: "0" or "" when the service does not run).

    A line that names no process (ss may not read another user's sockets: in a container
    without CAP_SYS_PTRACE even root cannot) is foreign only when the service does not run:
    then nothing of it can hold the port; while it runs, the socket is most likely its own."""
    main = str(main_pid or "").strip()
    running = main not in ("", "0")
    foreign = []
    for line in str(ss_output or "").splitlines():
        holders = set(listener_pids(line))
        if line.strip() and (holders - {main} if holders else not running):
            foreign.append(line)
    return foreign


#: What `lstat` told about one path, for install_drift: None when the path is missing.
#: kind is "dir", "link" or "file"; target is the link's text (links only).
PathState = dict[str, Any]


def install_drift(
    install_root: str, version: str, bin_link: str, paths: dict[str, PathState | None]
) -> list[str]:
    """How the installed layout differs from what the role's install step makes, one
    sentence per difference (empty when the pinned version is in service as the role left it).

    The layout: `<root>/versions` a directory (root:root, 0755); `<root>/current` a link to
    `versions/<version>`; `bin_link` a link to `<root>/current/bin/ollama`; both links owned
    by root. `paths` maps each of the three paths to its lstat (see PathState).
    """
    root = install_root.rstrip("/") or "/"
    versions, current = f"{root}/versions", f"{root}/current"
    wanted_links = {current: f"versions/{version}", bin_link: f"{root}/current/bin/ollama"}
    drift = []
    seen = paths.get(versions)
    if seen is None:
        drift.append(f"{versions} is missing")
    elif seen.get("kind") != "dir":
        drift.append(f"{versions} is not a directory")
    elif (seen.get("mode"), seen.get("uid"), seen.get("gid")) != (0o755, 0, 0):
        drift.append(f"{versions} is not root:root 0755")
    for path, target in wanted_links.items():
        seen = paths.get(path)
        if seen is None:
            drift.append(f"{path} is missing")
        elif seen.get("kind") != "link" or seen.get("target") != target:
            drift.append(f"{path} does not point at {target}")
        elif (seen.get("uid"), seen.get("gid")) != (0, 0):
            drift.append(f"{path} is not owned by root:root")
    return drift
