# Copyright (c) localllm.fleet contributors
# Apache License 2.0 (see galaxy.yml)
"""The plan of a model fan-out: which blobs go through the swarm, who seeds, what aria2 runs.

A blob above the threshold is fetched once from the mirror by its first seed, which makes a
private torrent of it (mktorrent), tracks it (opentracker, whitelisted to that torrent only)
and seeds it (aria2c); every other host that wants it fetches it from the swarm with aria2c.
The torrent's SHA-1 piece hashes only steer the transfer: the blob's sha256 (the model's
digest) is what the role checks before anything hands the file on. This module validates
the inputs (every error names the blob and the setting to change), picks the seed, the
piece size and the argument lists; it runs nothing. Stdlib only, Python 3.9.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from ansible_collections.localllm.fleet.plugins.module_utils.ollama_api import ModelName

__all__ = [
    "SwarmError",
    "aria2_args",
    "bdecode",
    "check",
    "fleet_address",
    "info_hash",
    "piece_exponent",
    "plan",
    "registry_blobs",
    "registry_layers",
    "registry_manifest_url",
    "swarm_peers",
    "tracker_url",
]

_SHA256 = re.compile(r"^[0-9a-f]{64}$")
# A registry layer's digest; always fullmatch ("$" would let a trailing newline through).
_LAYER_DIGEST = re.compile(r"sha256:([0-9a-f]{64})")
# A manifest lists a handful of layers: anything bigger is not one.
_MANIFEST_LIMIT = 4 << 20
# No model layer comes near 16 TiB; a larger size is a broken or hostile manifest.
_MAX_LAYER_BYTES = 1 << 44
_URL = re.compile(r"^https?://[^\s/]+(/\S*)?$")
# mktorrent -l takes log2 of the piece length: 256 KiB .. 16 MiB.
_MIN_EXPONENT = 18
_MAX_EXPONENT = 24
# About this many pieces per torrent: few enough to keep the .torrent small (20 bytes of
# SHA-1 per piece), enough that peers have pieces to trade early.
_TARGET_PIECES = 2000


class SwarmError(ValueError):
    """A fan-out setting that cannot be used, with what to change."""


def _int(value: Any, where: str, minimum: int = 0) -> int:
    if isinstance(value, bool):
        raise SwarmError(f"{where} must be a whole number, got {value!r}")
    try:
        number = int(str(value).strip())
    except ValueError:
        raise SwarmError(f"{where} must be a whole number, got {value!r}") from None
    if number < minimum:
        raise SwarmError(f"{where} must be at least {minimum}, got {number}")
    return number


def _port(value: Any, where: str) -> int:
    number = _int(value, where, 1)
    if number > 65535:
        raise SwarmError(f"{where} must be a port 1-65535, got {number}")
    return number


def piece_exponent(size: Any) -> int:
    """log2 of the piece length for a blob of `size` bytes (mktorrent -l)."""
    size = _int(size, "blob size", 1)
    exponent = _MIN_EXPONENT
    while exponent < _MAX_EXPONENT and size // (1 << exponent) > _TARGET_PIECES:
        exponent += 1
    return exponent


def _blob(entry: Any, index: int) -> dict[str, Any]:
    if not isinstance(entry, Mapping):
        raise SwarmError(f"fleet_swarm_blobs[{index}] must be a mapping, got {entry!r}")
    where = f"fleet_swarm_blobs[{index}]"
    url = str(entry.get("url") or "")
    if not _URL.match(url):
        raise SwarmError(f"{where}: url must be an http(s) URL on the mirror, got {url!r}")
    sha256 = str(entry.get("sha256") or "").lower().removeprefix("sha256:")
    if not _SHA256.match(sha256):
        raise SwarmError(
            f"{where} ({url}): sha256 must be the blob's 64-hex digest (the trust anchor), "
            f"got {entry.get('sha256')!r}"
        )
    dest = str(entry.get("dest") or "")
    if not dest.startswith("/") or dest.endswith("/"):
        raise SwarmError(f"{where} ({url}): dest must be an absolute file path, got {dest!r}")
    mode = str(entry.get("mode") or "0644")
    if not re.match(r"^0[0-7]{3}$", mode):
        raise SwarmError(f"{where} ({url}): mode must be quoted octal like '0640', got {mode!r}")
    unknown = set(entry) - {"url", "sha256", "dest", "owner", "group", "mode"}
    if unknown:
        raise SwarmError(f"{where} ({url}): unknown keys {sorted(unknown)}")
    return {
        "url": url,
        "sha256": sha256,
        "dest": dest,
        "owner": str(entry.get("owner") or "root"),
        "group": str(entry.get("group") or "root"),
        "mode": mode,
    }


def check(blobs: Iterable[Any]) -> list[dict[str, Any]]:
    """The blobs, validated and normalised (before anything asks the mirror about them)."""
    if isinstance(blobs, (str, bytes)) or not isinstance(blobs, Iterable):
        raise SwarmError(f"fleet_swarm_blobs must be a list, got {blobs!r}")
    result = []
    seen: dict[str, str] = {}
    for index, entry in enumerate(blobs):
        blob = _blob(entry, index)
        if seen.setdefault(blob["dest"], blob["sha256"]) != blob["sha256"]:
            raise SwarmError(
                f"fleet_swarm_blobs: {blob['dest']} is the dest of two different blobs"
            )
        result.append(blob)
    return result


def plan(
    blobs: Iterable[Any], sizes: Mapping[str, Any], threshold: Any, enabled: Any = True
) -> list[dict[str, Any]]:
    """Each blob with `via` swarm or direct, its size and its torrent's piece exponent.

    `sizes` maps a blob's URL to its length in bytes (the mirror's Content-Length). A blob
    goes through the swarm when fan-out is enabled and it is larger than `threshold` bytes;
    `threshold` 0 sends every blob through it.
    """
    limit = _int(threshold, "fleet_swarm_threshold")
    result = []
    for blob in check(blobs):
        if blob["url"] not in sizes or sizes[blob["url"]] in (None, ""):
            raise SwarmError(f"{blob['url']}: the mirror gave no size (Content-Length)")
        size = _int(sizes[blob["url"]], f"size of {blob['url']}", 1)
        swarm = bool(enabled) and size > limit
        blob.update(
            size=size,
            via="swarm" if swarm else "direct",
            piece_exponent=piece_exponent(size),
            key=blob["sha256"][:16],
        )
        result.append(blob)
    return result


def swarm_peers(
    hosts: Sequence[str],
    wanted: Mapping[str, Iterable[str]],
    sha256: str,
    seeder: str = "",
    have: Mapping[str, Iterable[str]] | None = None,
) -> dict[str, Any]:
    """Who takes part in the swarm of one blob: `{peers, seeder, seeder_has}`.

    `wanted` maps a host to the sha256s it still needs through the swarm, `have` to those it
    already holds verified; both keep the play's order (`hosts`). The seed is `seeder` when
    it needs or has the blob; else the first host that has it (a rollout to new hosts costs
    the mirror nothing); else the first that needs it, the only host to read the mirror.
    `peers` are the hosts that need the blob, and the seed.
    """
    needing = [host for host in hosts if sha256 in set(wanted.get(host) or ())]
    if not needing:
        raise SwarmError(f"no host of the play fetches sha256:{sha256} through the swarm")
    holding = [host for host in hosts if sha256 in set((have or {}).get(host) or ())]
    chosen = seeder if seeder and seeder in needing + holding else (holding or needing)[0]
    peers = [host for host in hosts if host in needing or host == chosen]
    return {"peers": peers, "seeder": chosen, "seeder_has": chosen in holding}


def fleet_address(value: Any) -> str:
    """A host's fleet address as aria2 and opentracker bind to it: an IP address."""
    text = str(value or "").strip().strip("[]")
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        raise SwarmError(
            f"fleet_swarm_address must be the IP address fleet hosts reach this host on "
            f"(aria2 and opentracker bind to it), got {value!r}"
        ) from None


def tracker_url(address: Any, port: Any) -> str:
    """The announce URL of the seed's tracker (an IPv6 address in brackets)."""
    host = fleet_address(address)
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{_port(port, 'fleet_swarm_tracker_port')}/announce"


def aria2_args(
    role: str,
    torrent: str,
    directory: str,
    settings: Mapping[str, Any],
    web_seed: str = "",
) -> list[str]:
    """The aria2c argument list of a seed (`seed`) or a peer (`fetch`).

    DHT, peer exchange and local peer discovery stay off (the torrent is private too): peers
    come only from the fleet's tracker. The seed checks nothing (it made the torrent from the
    file it had just verified by sha256); a peer checks pieces it already has on disk, so an
    interrupted fetch resumes from its control file. `--seed-time` bounds how long a host
    seeds once it is complete; the role stops it earlier when every peer has the blob.
    """
    if role not in ("seed", "fetch"):
        raise SwarmError(f"aria2 role must be seed or fetch, got {role!r}")
    seed_minutes = _int(settings.get("seed_minutes", 30), "fleet_swarm_seed_minutes")
    args = [
        "/usr/bin/aria2c",
        "--no-conf=true",
        f"--dir={directory}",
        f"--listen-port={_port(settings.get('listen_port', 6881), 'fleet_swarm_listen_port')}",
        "--enable-dht=false",
        "--enable-dht6=false",
        "--enable-peer-exchange=false",
        "--bt-enable-lpd=false",
        "--bt-save-metadata=false",
        "--follow-torrent=false",
        "--continue=true",
        "--auto-file-renaming=false",
        "--allow-overwrite=false",
        "--file-allocation=none",
        f"--seed-time={seed_minutes}",
        "--seed-ratio=0.0",
        "--summary-interval=0",
        "--console-log-level=notice",
        f"--bt-max-peers={_int(settings.get('max_peers', 55), 'fleet_swarm_max_peers', 1)}",
    ]
    address = str(settings.get("address") or "").strip("[]")
    if address:
        args.append(f"--interface={fleet_address(address)}")
        if ":" not in address:
            args.append("--disable-ipv6=true")
    upload = _int(settings.get("upload_limit", 0), "fleet_swarm_upload_limit")
    if upload:
        args.append(f"--max-overall-upload-limit={upload}")
    if settings.get("require_crypto"):
        args += ["--bt-require-crypto=true", "--bt-min-crypto-level=arc4"]
    if role == "seed":
        args += ["--bt-seed-unverified=true", "--check-integrity=false"]
    else:
        hook = str(settings.get("complete_hook") or "")
        if hook:
            # Written before seeding starts; the -error name on a failed download.
            args += [f"--on-bt-download-complete={hook}", f"--on-download-error={hook}-error"]
        args += ["--check-integrity=true", "--bt-hash-check-seed=true"]
    args.append(f"--torrent-file={torrent}")
    if web_seed:
        if not _URL.match(web_seed):
            raise SwarmError(f"web seed must be an http(s) URL, got {web_seed!r}")
        args.append(web_seed)
    return args


def bdecode(data: bytes) -> Any:
    """A bencoded value (BEP 3): ints, byte strings, lists, dicts (keys stay bytes)."""
    value, end = _decode(data, 0)
    if end != len(data):
        raise SwarmError(f"torrent: {len(data) - end} bytes after the end of its dictionary")
    return value


def _decode(data: bytes, at: int) -> tuple[Any, int]:
    try:
        lead = data[at : at + 1]
        if lead == b"i":
            end = data.index(b"e", at)
            return int(data[at + 1 : end]), end + 1
        if lead in (b"l", b"d"):
            items = []
            at += 1
            while data[at : at + 1] != b"e":
                item, at = _decode(data, at)
                items.append(item)
            if lead == b"l":
                return items, at + 1
            if len(items) % 2:
                raise SwarmError("torrent: a dictionary key has no value")
            return {items[i]: items[i + 1] for i in range(0, len(items), 2)}, at + 1
        if lead.isdigit():
            colon = data.index(b":", at)
            length = int(data[at:colon])
            end = colon + 1 + length
            if end > len(data):
                raise SwarmError("torrent: a string runs past the end of the file")
            return data[colon + 1 : end], end
    except (ValueError, IndexError):
        pass
    raise SwarmError(f"torrent: not bencoded data at byte {at}")


def info_hash(data: bytes) -> str:
    """The torrent's info hash (hex SHA-1 of its bencoded `info` dictionary), as trackers use.

    Also checks the torrent is private and single-file: a public torrent would let clients
    look for peers outside the fleet.
    """
    meta = bdecode(data)
    if not isinstance(meta, dict) or not isinstance(meta.get(b"info"), dict):
        raise SwarmError("torrent: no info dictionary")
    info = meta[b"info"]
    if info.get(b"private") != 1:
        raise SwarmError("torrent: not private (make it with mktorrent -p)")
    if b"files" in info:
        raise SwarmError("torrent: one blob per torrent (it lists several files)")
    # The info dictionary's bytes as they are in the file: find where its value starts.
    start = _value_start(data, b"info")
    _, end = _decode(data, start)
    return hashlib.sha1(data[start:end]).hexdigest()  # noqa: S324 - BitTorrent's info hash is SHA-1 by definition


def _value_start(data: bytes, key: bytes) -> int:
    at = 1
    while data[at : at + 1] != b"e":
        name, at = _decode(data, at)
        if name == key:
            return at
        _, at = _decode(data, at)
    raise SwarmError(f"torrent: no {key.decode()} key")


# ------------------------------------------------------------------ registry pulls
# Ollama's pull (server/images.go PullModel, server/download.go downloadBlob) takes a file
# already at <store>/blobs/sha256-<hex> as a cache hit: it neither downloads nor re-hashes
# it. So the swarm may put a registry model's large layers there first -- verified here by
# their digest, the trust anchor -- and `ollama pull` then fetches only the manifest, the
# config and the small layers from the registry.


def _registry_name(name: Any) -> ModelName:
    try:
        return ModelName.parse(str(name or ""))
    except ValueError as err:
        raise SwarmError(f"registry model: {err}") from None


def _registry_base(model: ModelName, insecure: Any) -> str:
    scheme = "http" if bool(insecure) else "https"
    return f"{scheme}://{model.host}/v2/{model.namespace}/{model.model}"


def registry_manifest_url(name: Any, insecure: Any = False) -> str:
    """Where a registry serves the manifest of `name` (as Ollama's pull asks for it)."""
    model = _registry_name(name)
    return f"{_registry_base(model, insecure)}/manifests/{model.tag}"


def registry_layers(raw: Any, name: str) -> list[dict[str, Any]]:
    """`{sha256, size}` of the config and every layer of a registry manifest, each once.

    The manifest comes from the registry (over plain HTTP in an insecure lab): every digest
    must be `sha256:<64 hex>` (it becomes a file name in the store) and every size a whole
    number of bytes below 16 TiB; the same digest listed twice must have one size.
    """
    data = raw.encode("utf-8") if isinstance(raw, str) else raw
    if not isinstance(data, (bytes, bytearray)):
        raise SwarmError(f"{name}: the registry's manifest is not text, got {type(raw).__name__}")
    if len(data) > _MANIFEST_LIMIT:
        raise SwarmError(f"{name}: the registry's manifest is {len(data)} bytes, not a manifest")
    try:
        manifest = json.loads(data)
    except (ValueError, RecursionError):
        raise SwarmError(f"{name}: the registry's manifest is not JSON") from None
    if not isinstance(manifest, dict):
        raise SwarmError(f"{name}: the registry's manifest is not a JSON object")
    layers = manifest.get("layers")
    config = manifest.get("config")
    if not isinstance(layers, list) or (config is not None and not isinstance(config, dict)):
        raise SwarmError(f"{name}: the registry's manifest has no list of layers")
    found: dict[str, int] = {}
    for entry in [*([config] if config else []), *layers]:
        shown = repr(entry)[:120]
        if not isinstance(entry, dict):
            raise SwarmError(f"{name}: the manifest lists a layer that is not an object: {shown}")
        match = _LAYER_DIGEST.fullmatch(str(entry.get("digest") or ""))
        if not match or not isinstance(entry.get("digest"), str):
            raise SwarmError(
                f"{name}: the manifest lists a layer without a sha256:<64 hex> digest: {shown}"
            )
        size = entry.get("size")
        if not isinstance(size, int) or isinstance(size, bool) or not 0 <= size < _MAX_LAYER_BYTES:
            raise SwarmError(f"{name}: the manifest gives a layer an impossible size: {shown}")
        sha256 = match.group(1)
        if found.setdefault(sha256, size) != size:
            raise SwarmError(f"{name}: the manifest lists sha256:{sha256} with two sizes")
    if not found:
        raise SwarmError(f"{name}: the registry's manifest lists no layers")
    return [{"sha256": sha256, "size": size} for sha256, size in found.items()]


def registry_blobs(
    models: Iterable[Any],
    manifests: Mapping[str, Any],
    store: Any,
    threshold: Any,
    *,
    owner: Any = "ollama",
    group: Any = "ollama",
) -> list[dict[str, Any]]:
    """fleet_swarm_blobs for the layers above `threshold` bytes of registry models.

    `models` are plan items (`pull`, `insecure`), `manifests` maps each `pull` to its
    manifest as the registry sent it. Each layer goes to the Ollama store `store` under the
    name Ollama gives it (`blobs/sha256-<hex>`, its owner, mode 0644); a layer two models
    share is listed once.
    """
    limit = _int(threshold, "ollama_models_swarm_threshold")
    root = str(store or "").rstrip("/")
    if not root.startswith("/") or "/../" in f"{root}/" or "/./" in f"{root}/":
        raise SwarmError(f"the Ollama store must be an absolute path, got {store!r}")
    blobs: dict[str, dict[str, Any]] = {}
    for item in models:
        if not isinstance(item, Mapping) or not item.get("pull"):
            raise SwarmError(f"registry model: a plan item with `pull`, got {item!r}")
        pull = str(item["pull"])
        model = _registry_name(pull)
        if pull not in manifests:
            raise SwarmError(f"{pull}: no manifest was read from the registry")
        base = _registry_base(model, item.get("insecure", False))
        for layer in registry_layers(manifests[pull], pull):
            if layer["size"] <= limit or layer["sha256"] in blobs:
                continue
            blobs[layer["sha256"]] = {
                "url": f"{base}/blobs/sha256:{layer['sha256']}",
                "sha256": layer["sha256"],
                "dest": f"{root}/blobs/sha256-{layer['sha256']}",
                "owner": str(owner),
                "group": str(group),
                "mode": "0644",
            }
    return list(blobs.values())
