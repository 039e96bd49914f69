# Copyright (c) localllm.fleet contributors
# Apache License 2.0 (see galaxy.yml)
"""Remembered sha256 digests of big local files, and small JSON state files.

Hashing a 400 GB GGUF takes minutes, and a converged host must not pay that on every run.
A digest is remembered with the file's identity (device, inode, size, mtime and ctime in
nanoseconds) and is only trusted while all of them are unchanged. ctime cannot be set by a
user, so rewriting a file in place and restoring its mtime still invalidates the entry.
The `download` module records the digest it verified, so the `ollama_model` run that
imports the same file right after does not hash it again.

The state lives in ~/.cache/localllm-fleet/ of the user the module runs as (mode 0700/0600).
It is a cache: losing it costs time, never correctness.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from typing import Any

from ansible_collections.localllm.fleet.plugins.module_utils.atomic_file import write_atomic

STATE_DIR = "~/.cache/localllm-fleet"
_READ_BLOCK = 4 << 20
_MAX_ENTRIES = 2000


def sha256_file(path: str, progress: Callable[[int], None] | None = None) -> str:
    """`sha256:<hex>` of a file, read in 4 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while True:
            block = handle.read(_READ_BLOCK)
            if not block:
                break
            digest.update(block)
            if progress is not None:
                progress(len(block))
    return "sha256:" + digest.hexdigest()


def state_path(name: str, directory: str | None = None) -> str:
    return os.path.join(os.path.expanduser(directory or STATE_DIR), name)


def load_json(path: str) -> dict[str, Any]:
    """The object in a state file; {} when it is missing or unreadable (it is a cache)."""
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except (OSError, ValueError, RecursionError):  # a nesting bomb raises RecursionError
        return {}
    return data if isinstance(data, dict) else {}


def update_json(path: str, change: Callable[[dict[str, Any]], dict[str, Any]]) -> None:
    """Read the latest state, apply `change`, write it back atomically (0600).

    Failing to write a cache is not worth failing a task for: errors are swallowed.
    """
    directory = os.path.dirname(path)
    try:
        os.makedirs(directory, mode=0o700, exist_ok=True)
        data = change(load_json(path))
        text = json.dumps(data, sort_keys=True, separators=(",", ":"))
        write_atomic(path, text, 0o600, prefix=".state-")
    except OSError:
        return


def _identity(info: os.stat_result) -> dict[str, int]:
    return {
        "dev": info.st_dev,
        "ino": info.st_ino,
        "size": info.st_size,
        "mtime_ns": info.st_mtime_ns,
        "ctime_ns": info.st_ctime_ns,
    }


class DigestCache:
    """sha256 digests of files, trusted only while the file is provably unchanged."""

    FILE = "sha256.json"

    def __init__(self, path: str | None = None, writable: bool = True) -> None:
        self.path = path or state_path(self.FILE)
        self.writable = writable
        files = load_json(self.path).get("files")
        self._entries: dict[str, Any] = files if isinstance(files, dict) else {}
        self._new: dict[str, Any] = {}

    def get(self, path: str) -> str | None:
        """The remembered digest of `path`, if the file has not changed since."""
        real = os.path.realpath(path)
        entry = self._new.get(real) or self._entries.get(real)
        if not isinstance(entry, dict):
            return None
        try:
            info = os.stat(real)
        except OSError:
            return None
        if any(entry.get(key) != value for key, value in _identity(info).items()):
            return None
        digest = entry.get("sha256")
        return digest if isinstance(digest, str) and digest.startswith("sha256:") else None

    def remember(self, path: str, digest: str) -> None:
        real = os.path.realpath(path)
        try:
            info = os.stat(real)
        except OSError:
            return
        self._new[real] = {**_identity(info), "sha256": digest}

    def digest(self, path: str) -> str:
        """The digest of `path`: remembered, or computed (and remembered)."""
        known = self.get(path)
        if known:
            return known
        before = os.stat(path)
        computed = sha256_file(path)
        after = os.stat(path)
        if _identity(before) == _identity(after):  # not written to while being read
            self.remember(path, computed)
        return computed

    def save(self) -> None:
        if not self.writable or not self._new:
            return
        new = dict(self._new)

        def change(data: dict[str, Any]) -> dict[str, Any]:
            files = data.get("files") if isinstance(data.get("files"), dict) else {}
            files = {**files, **new}
            kept: dict[str, Any] = {}
            for path, entry in files.items():  # forget files that are gone or changed
                try:
                    info = os.stat(path)
                except OSError:
                    continue
                if isinstance(entry, dict) and all(
                    entry.get(key) == value for key, value in _identity(info).items()
                ):
                    kept[path] = entry
            if len(kept) > _MAX_ENTRIES:
                kept = dict(list(kept.items())[-_MAX_ENTRIES:])
            return {**data, "files": kept}

        update_json(self.path, change)
        self._entries.update(new)
        self._new.clear()


class ImportRecords:
    """What importing a set of files into Ollama produced (see model_state.learn_import).

    Keyed by the sorted digests of the imported files; trusted across Ollama servers and
    versions because it only lists digests that such an import has produced before.
    """

    FILE = "ollama-imports.json"

    def __init__(self, path: str | None = None, writable: bool = True) -> None:
        self.path = path or state_path(self.FILE)
        self.writable = writable
        imports = load_json(self.path).get("imports")
        self._records: dict[str, Any] = imports if isinstance(imports, dict) else {}
        self._new: dict[str, Any] = {}

    def get(self, key: str) -> dict[str, Any] | None:
        record = self._new.get(key) or self._records.get(key)
        return record if isinstance(record, dict) else None

    def put(self, key: str, record: dict[str, Any]) -> None:
        self._new[key] = record

    def save(self) -> None:
        if not self.writable or not self._new:
            return
        new = dict(self._new)

        def change(data: dict[str, Any]) -> dict[str, Any]:
            imports = data.get("imports") if isinstance(data.get("imports"), dict) else {}
            merged = {**imports, **new}
            if len(merged) > _MAX_ENTRIES:
                merged = dict(list(merged.items())[-_MAX_ENTRIES:])
            return {**data, "imports": merged}

        update_json(self.path, change)
        self._records.update(new)
        self._new.clear()
