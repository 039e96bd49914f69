"""The model store, in Ollama's on-disk layout (manifest/ package).

$OLLAMA_MODELS/manifests/<host>/<namespace>/<model>/<tag>   manifest JSON (Go encoding + "\n")
$OLLAMA_MODELS/blobs/sha256-<hex>                          content-addressed, 0644

Every file is written to a temporary file in the same directory and renamed into place, so a
crash or a cut-off upload never leaves a half-written blob or manifest under its final name.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import re
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, BinaryIO

from . import envconfig, names
from .gojson import encode_line
from .names import Name

MANIFEST_MEDIA_TYPE = "application/vnd.docker.distribution.manifest.v2+json"
CONFIG_MEDIA_TYPE = "application/vnd.docker.container.image.v1+json"
MEDIA_MODEL = "application/vnd.ollama.image.model"
MEDIA_TEMPLATE = "application/vnd.ollama.image.template"
MEDIA_PROMPT = "application/vnd.ollama.image.prompt"
MEDIA_SYSTEM = "application/vnd.ollama.image.system"
MEDIA_PARAMS = "application/vnd.ollama.image.params"
MEDIA_LICENSE = "application/vnd.ollama.image.license"
MEDIA_MESSAGES = "application/vnd.ollama.image.messages"
MEDIA_ADAPTER = "application/vnd.ollama.image.adapter"
MEDIA_PROJECTOR = "application/vnd.ollama.image.projector"

DIGEST_RE = re.compile(r"^sha256[:-][0-9a-fA-F]{64}$")
PRUNE_GRACE_SECONDS = 3600

LOCK = threading.RLock()


class InvalidDigest(ValueError):
    def __init__(self) -> None:
        super().__init__("invalid digest format")


def go_os_error(exc: OSError, op: str | None = None) -> str:
    """An OSError as Go's *PathError prints it: 'open /x: permission denied'."""
    text = os.strerror(exc.errno) if exc.errno else str(exc)
    text = text[:1].lower() + text[1:] if text else text
    if exc.errno == errno.ENOENT:
        text = "no such file or directory"
    path = exc.filename
    if path is None:
        return text
    return f"{op or 'open'} {path}: {text}"


def models_dir() -> str:
    return envconfig.models()


def _mkdirs(path: str) -> None:
    try:
        os.makedirs(path, mode=0o755, exist_ok=True)
    except OSError as exc:
        raise OSError(
            exc.errno, go_os_error(exc, "mkdir") + ": ensure path elements are traversable"
        ) from exc


def manifests_dir() -> str:
    path = os.path.join(models_dir(), "manifests")
    _mkdirs(path)
    return path


def blobs_path(digest: str) -> str:
    """manifest.BlobsPath: only real sha256 digests; ':' becomes '-'."""
    if digest and not DIGEST_RE.match(digest):
        raise InvalidDigest()
    path = os.path.join(models_dir(), "blobs", digest.replace(":", "-"))
    _mkdirs(path if not digest else os.path.dirname(path))
    return path


def blob_exists(digest: str) -> bool:
    return os.path.isfile(blobs_path(digest))


def sha256_file(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return "sha256:" + digest.hexdigest()


@contextlib.contextmanager
def temp_in(directory: str, prefix: str) -> Iterator[tuple[BinaryIO, str]]:
    """A temporary file next to its destination; removed unless it was renamed away."""
    fd, path = tempfile.mkstemp(prefix=prefix, dir=directory)
    handle = os.fdopen(fd, "w+b")
    try:
        yield handle, path
    finally:
        handle.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)


def _install(tmp_path: str, final: str, mode: int = 0o644) -> None:
    os.chmod(tmp_path, mode)
    os.replace(tmp_path, final)


def touch(path: str) -> None:
    now = time.time_ns()
    os.utime(path, ns=(now, now))


@dataclass
class Layer:
    media_type: str
    digest: str
    size: int
    from_: str = ""
    name: str = ""
    status: str = ""

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "mediaType": self.media_type,
            "digest": self.digest,
            "size": self.size,
        }
        if self.from_:
            out["from"] = self.from_
        if self.name:
            out["name"] = self.name
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Layer:
        return cls(
            media_type=str(data.get("mediaType", "")),
            digest=str(data.get("digest", "")),
            size=int(data.get("size", 0) or 0),
            from_=str(data.get("from", "") or ""),
            name=str(data.get("name", "") or ""),
        )


def new_layer(stream: Iterable[bytes], media_type: str) -> Layer:
    """manifest.NewLayer: write to a temp file, hash, rename to sha256-<hex> if new."""
    blobs = blobs_path("")
    with temp_in(blobs, "sha256-") as (handle, tmp_path):
        digest = hashlib.sha256()
        size = 0
        for chunk in stream:
            handle.write(chunk)
            digest.update(chunk)
            size += len(chunk)
        handle.flush()
        os.fsync(handle.fileno())
        handle.close()
        name = "sha256:" + digest.hexdigest()
        final = blobs_path(name)
        status = "using existing layer"
        with LOCK:
            if not os.path.exists(final):
                status = "creating new layer"
                _install(tmp_path, final)
        touch(final)
    return Layer(media_type=media_type, digest=name, size=size, status=f"{status} {name}")


def new_layer_bytes(data: bytes, media_type: str) -> Layer:
    return new_layer([data], media_type)


def layer_from_existing(digest: str, media_type: str, from_: str) -> Layer:
    if not digest:
        raise ValueError("creating new layer from layer with empty digest")
    path = blobs_path(digest)
    size = os.stat(path).st_size
    touch(path)
    return Layer(media_type, digest, size, from_=from_, status=f"using existing layer {digest}")


@dataclass
class Manifest:
    name: Name
    config: Layer
    layers: list[Layer]
    digest: str  # hex sha256 of the manifest file
    path: str
    mtime_ns: int
    raw: bytes

    @property
    def size(self) -> int:
        return sum(layer.size for layer in self.layers) + self.config.size

    def all_digests(self) -> list[str]:
        return [layer.digest for layer in self.layers] + [self.config.digest]


def manifest_path(name: Name) -> str:
    return os.path.join(manifests_dir(), name.filepath())


def parse_manifest_bytes(name: Name, raw: bytes, path: str, mtime_ns: int) -> Manifest:
    import json

    data = json.loads(raw.decode("utf-8", errors="replace"))
    if not isinstance(data, dict):
        raise ValueError("json: cannot unmarshal into Go value of type manifest.Manifest")
    config = Layer.from_json(data.get("config") or {})
    layers = [Layer.from_json(x) for x in data.get("layers") or []]
    return Manifest(
        name=name,
        config=config,
        layers=layers,
        digest=hashlib.sha256(raw).hexdigest(),
        path=path,
        mtime_ns=mtime_ns,
        raw=raw,
    )


def read_manifest(name: Name) -> Manifest:
    """manifest.ParseNamedManifest; FileNotFoundError when the model does not exist."""
    if not name.valid:
        raise ValueError(f"unqualified name: {name}")
    path = manifest_path(name)
    with open(path, "rb") as handle:
        raw = handle.read()
        mtime_ns = os.fstat(handle.fileno()).st_mtime_ns
    return parse_manifest_bytes(name, raw, path, mtime_ns)


def manifest_bytes(config: Layer, layers: list[Layer]) -> bytes:
    return encode_line(
        {
            "schemaVersion": 2,
            "mediaType": MANIFEST_MEDIA_TYPE,
            "config": config.to_json(),
            "layers": [layer.to_json() for layer in layers],
        }
    )


def write_file_atomic(path: str, data: bytes, mode: int = 0o644) -> None:
    directory = os.path.dirname(path)
    _mkdirs(directory)
    with temp_in(directory, "." + os.path.basename(path) + ".tmp-") as (handle, tmp_path):
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
        handle.close()
        _install(tmp_path, path, mode)


def write_manifest(name: Name, config: Layer, layers: list[Layer]) -> bytes:
    data = manifest_bytes(config, layers)
    write_manifest_raw(name, data)
    return data


def write_manifest_raw(name: Name, data: bytes) -> None:
    with LOCK:
        write_file_atomic(os.path.join(manifests_dir(), name.filepath()), data)


def list_manifests(continue_on_error: bool = True) -> dict[Name, Manifest]:
    """manifest.Manifests: every manifests/<host>/<ns>/<model>/<tag> file."""
    root = manifests_dir()
    out: dict[Name, Manifest] = {}
    for host in sorted(_listdir(root)):
        for namespace in sorted(_listdir(os.path.join(root, host))):
            for model in sorted(_listdir(os.path.join(root, host, namespace))):
                model_dir = os.path.join(root, host, namespace, model)
                for tag in sorted(_listdir(model_dir)):
                    path = os.path.join(model_dir, tag)
                    if not os.path.isfile(path) or tag.startswith("."):
                        continue
                    name = names.from_filepath(os.path.join(host, namespace, model, tag))
                    if name is None:
                        if not continue_on_error:
                            raise ValueError(f"{os.path.relpath(path, root)} bad manifest name")
                        continue
                    try:
                        out[name] = read_manifest(name)
                    except (OSError, ValueError) as exc:
                        if not continue_on_error:
                            raise ValueError(f"{name} {exc}") from exc
    return out


def _listdir(path: str) -> list[str]:
    try:
        return [
            e
            for e in os.listdir(path)
            if os.path.isdir(os.path.join(path, e)) or os.path.isfile(os.path.join(path, e))
        ]
    except (NotADirectoryError, FileNotFoundError):
        return []


def existing_name(name: Name) -> Name:
    """getExistingName: adopt the case of parts that already exist in the store."""
    host, namespace, model, tag = name.host, name.namespace, name.model, name.tag
    for existing in list_manifests():
        if existing.host.lower() == name.host.lower():
            host = existing.host
        if existing.namespace.lower() == name.namespace.lower():
            namespace = existing.namespace
        if existing.model.lower() == name.model.lower():
            model = existing.model
        if existing.tag.lower() == name.tag.lower():
            tag = existing.tag
    return Name(host=host, namespace=namespace, model=model, tag=tag, scheme=name.scheme)


def prune_directory(path: str) -> None:
    """Remove empty directories below (and including) path."""
    if not os.path.isdir(path) or os.path.islink(path):
        return
    for entry in os.listdir(path):
        prune_directory(os.path.join(path, entry))
    if not os.listdir(path):
        with contextlib.suppress(OSError):
            os.rmdir(path)


def remove_manifest(manifest: Manifest) -> None:
    with LOCK:
        os.remove(manifest.path)
        root = manifests_dir()
        prune_directory(root)
        _mkdirs(root)


def remove_unused_layers(digests: Iterable[str]) -> None:
    """Delete blobs of these digests that no remaining manifest references."""
    with LOCK:
        in_use: set[str] = set()
        for manifest in list_manifests().values():
            in_use.update(manifest.all_digests())
        for digest in digests:
            if not digest or digest in in_use:
                continue
            with contextlib.suppress(FileNotFoundError, InvalidDigest):
                os.remove(blobs_path(digest))


def fix_blobs() -> None:
    """fixBlobs: rename legacy sha256:<hex> blob names to sha256-<hex>."""
    blobs = blobs_path("")
    for dirpath, _dirnames, filenames in os.walk(blobs):
        for filename in filenames:
            kind, sep, rest = filename.partition(":")
            if sep and kind == "sha256":
                os.replace(os.path.join(dirpath, filename), os.path.join(dirpath, f"sha256-{rest}"))


def prune_layers(log) -> None:
    """PruneLayers at serve start: unreferenced blobs older than the grace period go;
    invalid names (e.g. partial downloads) older than it go too."""
    blobs = blobs_path("")
    candidates: set[str] = set()
    now = time.time()
    for entry in sorted(os.listdir(blobs)):
        path = os.path.join(blobs, entry)
        if os.path.isdir(path):
            continue
        try:
            mtime = os.stat(path).st_mtime
        except OSError as exc:
            log("ERROR", f'msg="couldn\'t stat blob" blob={entry} error="{exc}"')
            continue
        if now - mtime < PRUNE_GRACE_SECONDS:
            continue
        digest = entry.replace("-", ":")
        if not DIGEST_RE.match(digest):
            with contextlib.suppress(OSError):
                os.remove(path)
            continue
        candidates.add(digest)
    log("INFO", f'msg="total blobs: {len(candidates)}"')
    in_use: set[str] = set()
    for manifest in list_manifests().values():
        in_use.update(manifest.all_digests())
    removed = 0
    for digest in sorted(candidates - in_use):
        with contextlib.suppress(OSError):
            os.remove(blobs_path(digest))
            removed += 1
    log("INFO", f'msg="total unused blobs removed: {len(candidates - in_use)}"')


def read_blob_text(digest: str) -> str:
    with open(blobs_path(digest), "rb") as handle:
        return handle.read().decode("utf-8", errors="replace")
