"""Replace a file atomically: the new content is written to a temporary file in the same
directory, flushed to disk, given its owner and mode, then renamed over the target.

A reader (Ollama, node_exporter, LiteLLM's key hook) sees the old file or the new one, never
half of one; a crash leaves at most a temporary file, which carries `prefix`/`suffix` so
that a reader globbing for the real name never picks it up. Runs on managed hosts: stdlib
only, Python 3.9.
"""

from __future__ import annotations

import contextlib
import os
import tempfile


def write_atomic(
    path: str,
    data: bytes | str,
    mode: int,
    *,
    uid: int = -1,
    gid: int = -1,
    prefix: str = ".tmp-",
    suffix: str = "",
    sync_directory: bool = False,
) -> None:
    """Write `data` to `path` atomically with `mode` (and `uid`/`gid` unless -1).

    `sync_directory` also flushes the directory entry, so the rename itself survives a
    power cut (for files whose loss would cost a download, such as a model's manifest).
    Errors propagate (OSError); the temporary file never outlives the call.
    """
    directory = os.path.dirname(path) or "."
    fd, temporary = tempfile.mkstemp(prefix=prefix, suffix=suffix, dir=directory)
    done: str | None = None
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data.encode("utf-8") if isinstance(data, str) else data)
            handle.flush()
            os.fsync(handle.fileno())
        if uid >= 0 or gid >= 0:
            os.chown(temporary, uid, gid)
        os.chmod(temporary, mode)
        os.replace(temporary, path)
        done = path
    finally:
        if done is None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temporary)
    if sync_directory:
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
