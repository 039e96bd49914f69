# Copyright (c) localllm.fleet contributors
# Apache License 2.0 (see galaxy.yml)
"""Model bundles: Ollama models (manifests and blobs) in one archive, for air-gapped hosts.

A bundle is an uncompressed tar (weights do not compress, and a tar can be read as a
stream, so a 400 GB bundle is never seeked or held in memory), with members in this order:

    index.json                                   what the bundle holds (read first)
    manifests/<host>/<namespace>/<model>/<tag>   each manifest, byte for byte as stored
    blobs/sha256-<hex>                           each blob once, named by its digest

index.json: {"format": "localllm.fleet/model-bundle", "version": 1,
             "models": [{"name", "manifest", "digest", "size", "blobs": [digest...]}],
             "blobs": [{"digest", "size"}]}

`scripts/model-bundle export` writes one from a store, hashing every blob as it reads it;
`import_bundle()` (module localllm.fleet.ollama_bundle) unpacks only the blobs a store
lacks, each into a temporary file in the store's blobs directory, hashed while written.
Nothing is renamed into place until every needed blob has been verified, and manifests are
written last: a bundle with a corrupt blob leaves the store exactly as it was.

Standard library only (runs on managed hosts).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import re
import shutil
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import IO, Any

from ansible_collections.localllm.fleet.plugins.module_utils.atomic_file import write_atomic
from ansible_collections.localllm.fleet.plugins.module_utils.ollama_api import ModelName

FORMAT = "localllm.fleet/model-bundle"
VERSION = 1
INDEX = "index.json"
_INDEX_LIMIT = 64 << 20
_MANIFEST_LIMIT = 4 << 20
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")  # always fullmatch: "$" would allow a "\n"
_BLOB_MEMBER = re.compile(r"blobs/sha256-([0-9a-f]{64})")
_COPY_BLOCK = 4 << 20
TEMP_PREFIX = ".localllm-bundle-"
_STALE_SECONDS = 3600

__all__ = [
    "FORMAT",
    "VERSION",
    "BundleError",
    "BundleIndex",
    "ImportResult",
    "export_bundle",
    "import_bundle",
    "manifest_blobs",
    "read_index",
    "remove_unreferenced",
    "verify_bundle",
]


class BundleError(Exception):
    """A bundle or store problem, in words an operator can act on."""


@dataclass
class BundleModel:
    name: str
    manifest: str  # member path, manifests/<host>/<ns>/<model>/<tag>
    digest: str  # sha256 of the manifest bytes
    size: int
    blobs: list[str]


@dataclass
class BundleIndex:
    models: list[BundleModel]
    blobs: dict[str, int]  # digest -> size, in bundle order

    def to_json(self) -> bytes:
        data = {
            "format": FORMAT,
            "version": VERSION,
            "models": [
                {
                    "name": m.name,
                    "manifest": m.manifest,
                    "digest": m.digest,
                    "size": m.size,
                    "blobs": m.blobs,
                }
                for m in self.models
            ],
            "blobs": [{"digest": d, "size": s} for d, s in self.blobs.items()],
        }
        return (json.dumps(data, indent=1) + "\n").encode()

    def models_using(self, digest: str) -> list[str]:
        return [m.name for m in self.models if digest in m.blobs]

    @property
    def size(self) -> int:
        return sum(self.blobs.values())


def blob_member(digest: str) -> str:
    return "blobs/sha256-" + digest.split(":", 1)[1]


def manifest_member(name: ModelName) -> str:
    return "manifests/" + name.manifest_path()


def _json(raw: bytes, what: str) -> Any:
    """Parsed JSON; BundleError (never RecursionError or UnicodeDecodeError) otherwise."""
    try:
        return json.loads(raw)
    except RecursionError:
        raise BundleError(f"{what} is nested too deeply to be one") from None
    except ValueError as err:  # UnicodeDecodeError included
        raise BundleError(f"{what} is not JSON: {_short(err)}") from None


def _short(value: object, limit: int = 120) -> str:
    text = " ".join(str(value).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _size(value: Any) -> bool:
    """A byte count: an int (not a bool) from 0 up."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def manifest_blobs(raw: bytes, label: str) -> list[tuple[str, int]]:
    """(digest, size) of the config and every layer a manifest references."""
    data = _json(raw, f"the manifest of {label}")
    if not isinstance(data, dict):
        raise BundleError(f"the manifest of {label} is not a JSON object")
    config, layers = data.get("config") or {}, data.get("layers") or []
    if not isinstance(layers, list):
        raise BundleError(f"the manifest of {label}: 'layers' must be a list")
    found: list[tuple[str, int]] = []
    for entry in [config, *layers]:
        if not isinstance(entry, dict) or not entry.get("digest"):
            continue
        digest, size = str(entry["digest"]), entry.get("size")
        if not _DIGEST.fullmatch(digest) or not _size(size):
            raise BundleError(
                f"the manifest of {label} lists an invalid blob: {_short(repr(entry))}"
            )
        if digest not in (d for d, _ in found):
            found.append((digest, size))
    if not found:
        raise BundleError(f"the manifest of {label} lists no blobs")
    return found


def _sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def parse_index(raw: bytes) -> BundleIndex:
    """Validate index.json: format, version, names, member paths, digests, sizes.

    BundleError says what is wrong; callers prefix it with "<path> is not a model bundle".
    """
    data = _json(raw, INDEX)
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise BundleError(f"{INDEX} lacks format {FORMAT!r}")
    if data.get("version") != VERSION:
        raise BundleError(
            f"bundle format version {_short(repr(data.get('version')), 20)} is not supported "
            f"(this toolkit reads version {VERSION})"
        )
    listed_blobs, listed_models = data.get("blobs") or [], data.get("models") or []
    if not isinstance(listed_blobs, list):
        raise BundleError(f"{INDEX}: 'blobs' must be a list")
    if not isinstance(listed_models, list):
        raise BundleError(f"{INDEX}: 'models' must be a list")
    blobs: dict[str, int] = {}
    for entry in listed_blobs:
        digest = entry.get("digest") if isinstance(entry, dict) else None
        size = entry.get("size") if isinstance(entry, dict) else None
        if not isinstance(digest, str) or not _DIGEST.fullmatch(digest):
            raise BundleError(f"{INDEX} lists an invalid blob digest: {_short(repr(entry))}")
        if not _size(size):
            raise BundleError(f"{INDEX} lists an invalid size for {digest}")
        blobs[digest] = size
    models: list[BundleModel] = []
    for entry in listed_models:
        if not isinstance(entry, dict):
            raise BundleError(f"{INDEX} has an invalid model entry: {_short(repr(entry))}")
        try:
            name = ModelName.parse(str(entry.get("name", "")))
        except ValueError as err:
            raise BundleError(f"{INDEX}: {err}") from err
        manifest = entry.get("manifest")
        if manifest != manifest_member(name):  # also rules out paths outside the store
            raise BundleError(
                f"{INDEX}: the manifest of {name.display_shortest()} must be "
                f"{manifest_member(name)}"
            )
        digest, size = entry.get("digest"), entry.get("size")
        refs = entry.get("blobs")
        if not isinstance(digest, str) or not _DIGEST.fullmatch(digest):
            raise BundleError(f"{INDEX}: invalid manifest digest for {name.display_shortest()}")
        if not _size(size) or not 0 < size <= _MANIFEST_LIMIT:
            raise BundleError(f"{INDEX}: invalid manifest size for {name.display_shortest()}")
        if not isinstance(refs, list) or not all(
            isinstance(r, str) and _DIGEST.fullmatch(r) for r in refs
        ):
            raise BundleError(f"{INDEX}: invalid blob list for {name.display_shortest()}")
        models.append(BundleModel(name.display_shortest(), manifest, digest, size, list(refs)))
    if not models:
        raise BundleError(f"{INDEX} lists no models")
    return BundleIndex(models=models, blobs=blobs)


# --------------------------------------------------------------------------- reading


def _regular(member: tarfile.TarInfo) -> None:
    if not member.isfile():
        raise BundleError(f"bundle member {member.name} is not a regular file")


def _extract(tar: tarfile.TarFile, member: tarfile.TarInfo) -> IO[bytes]:
    _regular(member)
    handle = tar.extractfile(member)
    if handle is None:
        raise BundleError(f"bundle member {member.name} cannot be read")
    return handle


def _read_member(tar: tarfile.TarFile, member: tarfile.TarInfo, limit: int) -> bytes:
    _regular(member)
    if member.size > limit:
        raise BundleError(f"bundle member {member.name} is too big ({member.size} bytes)")
    handle = tar.extractfile(member)
    if handle is None:
        raise BundleError(f"bundle member {member.name} cannot be read")
    try:
        data = handle.read()
    except tarfile.TarError:
        data = b""
    if len(data) != member.size:
        raise BundleError(f"the bundle ends inside {member.name} (truncated)")
    return data


def _open_stream(fileobj: IO[bytes], path: str) -> tarfile.TarFile:
    try:
        return tarfile.open(fileobj=fileobj, mode="r|")
    except tarfile.TarError as err:
        raise BundleError(f"{path} is not a tar archive: {err}") from err


def _first_index(tar: tarfile.TarFile, path: str) -> BundleIndex:
    try:
        member = tar.next()
    except tarfile.TarError as err:
        raise BundleError(f"{path} is not a model bundle: {err}") from err
    if member is None or member.name != INDEX:
        raise BundleError(f"{path} is not a model bundle: its first member is not {INDEX}")
    raw = _read_member(tar, member, _INDEX_LIMIT)
    try:
        return parse_index(raw)
    except BundleError as err:
        raise BundleError(f"{path} is not a model bundle: {err}") from None


def _manifest_refs(path: str, raw: bytes, model: BundleModel) -> list[tuple[str, int]]:
    """The manifest's blobs, or BundleError "<path> is not a model bundle: ..."."""
    try:
        return manifest_blobs(raw, model.name)
    except BundleError as err:
        raise BundleError(f"{path} is not a model bundle: {err}") from None


def _size_disagreements(
    model: BundleModel, refs: list[tuple[str, int]], index: BundleIndex
) -> list[str]:
    """A manifest whose layer sizes differ from the index's would import a model Ollama
    cannot load (it reads exactly the manifest's size): every disagreement, in words."""
    return [
        f"manifest of {model.name}: blob {digest} has {size} bytes in the manifest, "
        f"{index.blobs[digest]} in the index"
        for digest, size in refs
        if digest in index.blobs and index.blobs[digest] != size
    ]


def read_index(path: str) -> BundleIndex:
    """The index of a bundle file (reads only its first member)."""
    try:
        with open(path, "rb") as handle:
            tar = _open_stream(handle, path)
            return _first_index(tar, path)
    except OSError as err:
        raise BundleError(f"cannot read {path}: {err.strerror or err}") from err


def _members(tar: tarfile.TarFile) -> Iterable[tarfile.TarInfo]:
    while True:
        try:
            member = tar.next()
        except tarfile.TarError as err:
            raise BundleError(f"the bundle is damaged: {err}") from err
        if member is None:
            return
        yield member


def _copy_hashed(source: IO[bytes], target: IO[bytes] | None, size: int, name: str) -> str:
    """Copy exactly `size` bytes (to nowhere when target is None); their sha256."""
    digest = hashlib.sha256()
    left = size
    while left:
        try:
            block = source.read(min(_COPY_BLOCK, left))
        except tarfile.TarError:  # "unexpected end of data"
            block = b""
        if not block:
            raise BundleError(f"the bundle ends inside {name} (truncated)")
        digest.update(block)
        if target is not None:
            target.write(block)
        left -= len(block)
    return "sha256:" + digest.hexdigest()


def verify_bundle(path: str) -> tuple[BundleIndex, list[str]]:
    """Read a whole bundle and check everything; (index, problems)."""
    problems: list[str] = []
    try:
        with open(path, "rb") as handle:
            tar = _open_stream(handle, path)
            index = _first_index(tar, path)
            manifests = {m.manifest: m for m in index.models}
            seen_blobs: set[str] = set()
            seen_manifests: set[str] = set()
            for member in _members(tar):
                blob = _BLOB_MEMBER.fullmatch(member.name)
                if member.name in manifests:
                    model = manifests[member.name]
                    raw = _read_member(tar, member, _MANIFEST_LIMIT)
                    seen_manifests.add(member.name)
                    if _sha256(raw) != model.digest:
                        problems.append(f"manifest of {model.name}: digest mismatch")
                        continue
                    pairs = _manifest_refs(path, raw, model)
                    if sorted(d for d, _ in pairs) != sorted(model.blobs):
                        problems.append(f"manifest of {model.name}: blobs differ from the index")
                    problems += _size_disagreements(model, pairs, index)
                elif blob:
                    _regular(member)
                    digest = "sha256:" + blob.group(1)
                    actual = _copy_hashed(_extract(tar, member), None, member.size, member.name)
                    seen_blobs.add(digest)
                    if digest not in index.blobs:
                        problems.append(f"blob {digest} is not in the index")
                    elif member.size != index.blobs[digest]:
                        problems.append(
                            f"blob {digest}: {member.size} bytes, the index says "
                            f"{index.blobs[digest]}"
                        )
                    if actual != digest:
                        users = ", ".join(index.models_using(digest)) or "no model"
                        problems.append(
                            f"blob {digest} ({users}) is corrupt: it hashes to {actual}"
                        )
                else:
                    problems.append(f"unexpected member {member.name}")
    except OSError as err:
        raise BundleError(f"cannot read {path}: {err.strerror or err}") from err
    for model in index.models:
        if model.manifest not in seen_manifests:
            problems.append(f"manifest of {model.name} is missing")
        missing = [d for d in model.blobs if d not in seen_blobs]
        if missing:
            problems.append(f"{model.name}: blobs not in the bundle: {', '.join(missing)}")
    problems += [
        f"blob {d} is in the index but not in the bundle"
        for d in index.blobs
        if d not in seen_blobs
    ]
    return index, list(dict.fromkeys(problems))


# --------------------------------------------------------------------------- export


class _HashingReader:
    """A file wrapper that hashes what tarfile reads from it."""

    def __init__(self, handle: IO[bytes]) -> None:
        self.handle = handle
        self.digest = hashlib.sha256()

    def read(self, size: int = -1) -> bytes:
        data = self.handle.read(size)
        self.digest.update(data)
        return data


class _HashingWriter:
    """Counts and hashes what is written (the bundle's own sha256 for its checksum)."""

    def __init__(self, handle: IO[bytes]) -> None:
        self.handle = handle
        self.digest = hashlib.sha256()

    def write(self, data: bytes) -> int:
        self.digest.update(data)
        return self.handle.write(data)

    def flush(self) -> None:
        self.handle.flush()


def _tarinfo(name: str, size: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size = size
    info.mode = 0o644
    info.mtime = 0  # the same models give the same bundle, byte for byte
    info.uname = info.gname = ""
    return info


def export_bundle(
    models_dir: str,
    names: list[str],
    out: IO[bytes],
    progress: Callable[[str, int], None] | None = None,
) -> tuple[BundleIndex, str]:
    """Write the bundle of `names` from the store at `models_dir` to `out`.

    Every blob is hashed while it is copied; a blob whose content does not match its
    name fails the export (BundleError). Returns (index, sha256 of the bundle).
    """
    models: list[BundleModel] = []
    raws: list[bytes] = []
    blobs: dict[str, int] = {}
    for text in names:
        try:
            name = ModelName.parse(text)
        except ValueError as err:
            raise BundleError(str(err)) from err
        if any(m.name == name.display_shortest() for m in models):
            continue
        path = os.path.join(models_dir, "manifests", name.manifest_path())
        try:
            with open(path, "rb") as handle:
                raw = handle.read()
        except FileNotFoundError:
            raise BundleError(
                f"model {text} is not in the store {models_dir} (no {path})"
            ) from None
        except OSError as err:
            raise BundleError(f"cannot read {path}: {err.strerror}") from err
        refs = manifest_blobs(raw, name.display_shortest())
        for digest, size in refs:
            blob = os.path.join(models_dir, "blobs", "sha256-" + digest.split(":", 1)[1])
            try:
                actual = os.path.getsize(blob)
            except OSError:
                raise BundleError(
                    f"model {name.display_shortest()}: blob {digest} is missing from {models_dir}"
                ) from None
            if actual != size:
                raise BundleError(
                    f"model {name.display_shortest()}: blob {digest} has {actual} bytes, "
                    f"its manifest says {size}"
                )
            blobs.setdefault(digest, size)
        models.append(
            BundleModel(
                name.display_shortest(),
                manifest_member(name),
                _sha256(raw),
                len(raw),
                [d for d, _ in refs],
            )
        )
        raws.append(raw)
    index = BundleIndex(models=models, blobs=blobs)
    writer = _HashingWriter(out)
    with tarfile.open(fileobj=writer, mode="w|", format=tarfile.PAX_FORMAT) as tar:  # type: ignore
        data = index.to_json()
        tar.addfile(_tarinfo(INDEX, len(data)), _bytes_reader(data))
        for model, raw in zip(models, raws):  # noqa: B905 - same length; 3.9 hosts lack strict=
            tar.addfile(_tarinfo(model.manifest, len(raw)), _bytes_reader(raw))
        for digest, size in blobs.items():
            path = os.path.join(models_dir, "blobs", "sha256-" + digest.split(":", 1)[1])
            with open(path, "rb") as handle:
                reader = _HashingReader(handle)
                try:
                    tar.addfile(_tarinfo(blob_member(digest), size), reader)  # type: ignore
                except OSError as err:
                    raise BundleError(f"cannot read blob {digest}: {err}") from err
            actual = "sha256:" + reader.digest.hexdigest()
            if actual != digest:
                users = ", ".join(index.models_using(digest))
                raise BundleError(
                    f"blob {digest} of {users} is corrupt in the store {models_dir}: "
                    f"its content hashes to {actual}; pull the model again"
                )
            if progress is not None:
                progress(digest, size)
    writer.flush()
    return index, "sha256:" + writer.digest.hexdigest()


def _bytes_reader(data: bytes) -> IO[bytes]:
    return io.BytesIO(data)


# --------------------------------------------------------------------------- import


@dataclass
class ImportResult:
    changed: bool = False
    models: list[str] = field(default_factory=list)  # manifests written (new or updated)
    blobs_added: int = 0
    bytes_added: int = 0
    blobs_present: int = 0


def _blob_path(models_dir: str, digest: str) -> str:
    return os.path.join(models_dir, "blobs", "sha256-" + digest.split(":", 1)[1])


def _manifest_file(models_dir: str, member: str) -> str:
    return os.path.join(models_dir, *member.split("/"))


def _file_digest(path: str) -> str | None:
    try:
        with open(path, "rb") as handle:
            return _sha256(handle.read(_MANIFEST_LIMIT + 1))
    except OSError:
        return None


def _makedirs(path: str, uid: int, gid: int, made: list[str]) -> None:
    """mkdir -p with mode 0755 and the store's owner for every directory it creates."""
    missing = []
    current = path
    while not os.path.isdir(current):
        missing.append(current)
        parent = os.path.dirname(current)
        if parent == current:
            break
        current = parent
    for directory in reversed(missing):
        os.mkdir(directory, 0o755)
        made.append(directory)
        _chown(directory, uid, gid)


def _chown(path: str, uid: int, gid: int) -> None:
    if uid < 0 and gid < 0:
        return
    try:
        os.chown(path, uid, gid)
    except PermissionError as err:
        raise BundleError(f"cannot give {path} to uid {uid} gid {gid}: {err.strerror}") from err


def remove_stale_temps(models_dir: str, now: float | None = None) -> None:
    """Temporary files an interrupted import left in the blobs directory (older than 1 h)."""
    blobs = os.path.join(models_dir, "blobs")
    now = time.time() if now is None else now
    with contextlib.suppress(OSError):
        for entry in os.listdir(blobs):
            if entry.startswith(TEMP_PREFIX):
                path = os.path.join(blobs, entry)
                with contextlib.suppress(OSError):
                    if now - os.stat(path).st_mtime > _STALE_SECONDS:
                        os.unlink(path)


def plan_import(index: BundleIndex, models_dir: str) -> tuple[dict[str, int], list[str], int]:
    """(blobs to add: digest -> size, manifests to write: member paths, blobs already present).

    A blob counts as present when a file of the right size has its name; the store's
    content is not re-hashed (that was verified when it arrived).
    """
    missing: dict[str, int] = {}
    present = 0
    for digest, size in index.blobs.items():
        path = _blob_path(models_dir, digest)
        if os.path.isfile(path) and os.path.getsize(path) == size:
            present += 1
        else:
            missing[digest] = size
    for model in index.models:
        for digest in model.blobs:
            if digest in index.blobs:
                continue
            if not os.path.isfile(_blob_path(models_dir, digest)):
                raise BundleError(
                    f"model {model.name} needs blob {digest}, which is neither in the bundle "
                    f"nor in the store {models_dir}"
                )
    writes = [
        m.manifest
        for m in index.models
        if _file_digest(_manifest_file(models_dir, m.manifest)) != m.digest
    ]
    return missing, writes, present


def import_bundle(
    path: str,
    models_dir: str,
    uid: int = -1,
    gid: int = -1,
    check_mode: bool = False,
) -> ImportResult:
    """Import a bundle into the store at `models_dir` (see the module docstring)."""
    try:
        handle = open(path, "rb")  # noqa: SIM115 - closed in the finally below
    except OSError as err:
        raise BundleError(f"cannot read {path}: {err.strerror or err}") from err
    staged: dict[str, str] = {}  # digest -> temporary path
    made_dirs: list[str] = []
    committed = False
    try:
        tar = _open_stream(handle, path)
        index = _first_index(tar, path)
        missing, writes, present = plan_import(index, models_dir)
        by_member = {m.manifest: m for m in index.models}
        result = ImportResult(
            changed=bool(missing or writes),
            models=[by_member[w].name for w in writes],
            blobs_added=len(missing),
            bytes_added=sum(missing.values()),
            blobs_present=present,
        )
        if not result.changed or check_mode:
            return result
        blobs_dir = os.path.join(models_dir, "blobs")
        _makedirs(blobs_dir, uid, gid, made_dirs)
        remove_stale_temps(models_dir)
        free = shutil.disk_usage(blobs_dir).free
        if free < result.bytes_added:
            raise BundleError(
                f"not enough space in {blobs_dir}: the bundle adds {result.bytes_added} bytes, "
                f"{free} are free"
            )
        manifests: dict[str, bytes] = {}
        for member in _members(tar):
            blob = _BLOB_MEMBER.fullmatch(member.name)
            if member.name in by_member:
                model = by_member[member.name]
                raw = _read_member(tar, member, _MANIFEST_LIMIT)
                if _sha256(raw) != model.digest:
                    raise BundleError(
                        f"the manifest of {model.name} is corrupt in the bundle "
                        f"(expected {model.digest}, got {_sha256(raw)})"
                    )
                pairs = _manifest_refs(path, raw, model)
                if sorted(d for d, _ in pairs) != sorted(model.blobs):
                    raise BundleError(f"the manifest of {model.name} does not match the index")
                wrong = _size_disagreements(model, pairs, index) + _store_disagreements(
                    model, pairs, index, models_dir
                )
                if wrong:
                    raise BundleError(f"{path} is not a model bundle: {'; '.join(wrong)}")
                manifests[member.name] = raw
            elif blob:
                digest = "sha256:" + blob.group(1)
                if digest not in missing or digest in staged:
                    continue  # the store has it: skip its bytes
                _regular(member)
                if member.size != missing[digest]:
                    raise BundleError(
                        f"blob {digest} of {', '.join(index.models_using(digest))} has "
                        f"{member.size} bytes in the bundle, its index says {missing[digest]}"
                    )
                source = _extract(tar, member)
                fd, temp = tempfile.mkstemp(prefix=TEMP_PREFIX, dir=blobs_dir)
                staged[digest] = temp
                with os.fdopen(fd, "wb") as target:
                    actual = _copy_hashed(source, target, member.size, member.name)
                    target.flush()
                    os.fsync(target.fileno())
                if actual != digest:
                    users = ", ".join(index.models_using(digest)) or "no model"
                    raise BundleError(
                        f"blob {digest} of model {users} is corrupt in the bundle: its "
                        f"content hashes to {actual}; nothing was imported"
                    )
            else:
                raise BundleError(f"unexpected bundle member {member.name}")
        lacking = [d for d in missing if d not in staged]
        if lacking:
            users = ", ".join(sorted({u for d in lacking for u in index.models_using(d)}))
            raise BundleError(
                f"the bundle lacks blobs its index lists ({', '.join(lacking)}; "
                f"models {users or 'none'}): it is incomplete or damaged; nothing was imported"
            )
        absent = [w for w in writes if w not in manifests]
        if absent:
            raise BundleError(f"the bundle lacks manifests its index lists: {', '.join(absent)}")
        # Commit: every blob is verified; make them visible, then the manifests.
        committed = True
        for digest, temp in list(staged.items()):
            os.chmod(temp, 0o644)
            _chown(temp, uid, gid)
            os.replace(temp, _blob_path(models_dir, digest))
            del staged[digest]
        _fsync_dir(blobs_dir)
        for member in writes:
            target = _manifest_file(models_dir, member)
            _write_manifest(target, manifests[member], uid, gid, made_dirs)
        return result
    finally:
        for temp in staged.values():
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temp)
        if not committed:  # leave the store as it was, directories included
            for directory in reversed(made_dirs):
                with contextlib.suppress(OSError):
                    os.rmdir(directory)
        handle.close()


def _store_disagreements(
    model: BundleModel, refs: list[tuple[str, int]], index: BundleIndex, models_dir: str
) -> list[str]:
    """Blobs a manifest uses from the store (not in the bundle) whose size there differs."""
    wrong = []
    for digest, size in refs:
        if digest in index.blobs:
            continue
        try:
            actual = os.path.getsize(_blob_path(models_dir, digest))
        except OSError:
            continue  # plan_import has already refused a missing one
        if actual != size:
            wrong.append(
                f"manifest of {model.name}: blob {digest} has {size} bytes in the manifest, "
                f"{actual} in the store {models_dir}"
            )
    return wrong


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_manifest(path: str, data: bytes, uid: int, gid: int, made: list[str]) -> None:
    directory = os.path.dirname(path)
    _makedirs(directory, uid, gid, made)
    try:
        write_atomic(path, data, 0o644, uid=uid, gid=gid, prefix=".manifest-", sync_directory=True)
    except PermissionError as err:
        raise BundleError(f"cannot write {path} for uid {uid} gid {gid}: {err.strerror}") from err


def describe(index: BundleIndex) -> dict[str, Any]:
    """A summary for humans and tools (scripts/model-bundle inspect)."""
    return {
        "models": [
            {
                "name": m.name,
                "manifest": m.digest,
                "blobs": len(m.blobs),
                "size": sum(index.blobs.get(d, 0) for d in m.blobs),
            }
            for m in index.models
        ],
        "blobs": len(index.blobs),
        "size": index.size,
    }


def remove_unreferenced(models_dir: str, digests: Iterable[str]) -> list[str]:
    """Delete from the store the blobs among `digests` that no manifest references (what a
    failed create uploaded); the digests removed. An unreadable manifest stops it: nothing
    is removed that might be in use."""
    wanted = [d for d in dict.fromkeys(digests) if _DIGEST.fullmatch(d)]
    if not wanted:
        return []
    referenced: set[str] = set()
    root = os.path.join(models_dir, "manifests")
    for directory, _dirs, files in os.walk(root):
        for name in files:
            path = os.path.join(directory, name)
            try:
                if os.path.getsize(path) > _MANIFEST_LIMIT:
                    return []
                with open(path, "rb") as handle:
                    raw = handle.read(_MANIFEST_LIMIT + 1)
                referenced.update(d for d, _ in manifest_blobs(raw, path))
            except (OSError, BundleError):
                return []
    removed = []
    for digest in wanted:
        if digest in referenced:
            continue
        with contextlib.suppress(FileNotFoundError):
            os.unlink(_blob_path(models_dir, digest))
            removed.append(digest)
    return removed
