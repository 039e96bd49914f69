"""A reproducible zip of Python source for zipimport: the same files give the same bytes.

Used on the control node to ship a tool's code to hosts as one file (one copy, one round
trip, and unchanged on a no-op converge) instead of one copy per source file. The archive
carries an entry for every directory, so that implicit namespace packages such as
`ansible_collections` import from it (zipimport finds a namespace package only through its
directory entry), on Python 3.9 as on later releases.
"""

from __future__ import annotations

import io
import posixpath
import zipfile
from collections.abc import Iterable

# zip's epoch: no file's modification time reaches the archive.
_FIXED_TIME = (1980, 1, 1, 0, 0, 0)
_FILE_MODE = 0o100644
_DIR_MODE = 0o040755


class ArchiveError(ValueError):
    """A member name that cannot go into the archive as given."""


def member_name(prefix: str, name: str) -> str:
    """`prefix/name` as a relative POSIX path inside the archive; refuses absolute names,
    `..`, empty parts and backslashes (a hostile or mistyped list must not write outside)."""
    joined = posixpath.join(prefix, name) if prefix else name
    parts = joined.split("/")
    if (
        not name
        or joined.startswith("/")
        or "\\" in joined
        or any(part in ("", ".", "..") for part in parts)
    ):
        raise ArchiveError(
            f"python_archive: {joined!r} is not a relative path of plain names"
            " (no leading /, no . or .., no empty part, no backslash)"
        )
    return joined


def _directories(names: Iterable[str]) -> list[str]:
    found = set()
    for name in names:
        parts = name.split("/")[:-1]
        for depth in range(1, len(parts) + 1):
            found.add("/".join(parts[:depth]) + "/")
    return sorted(found)


def build(files: Iterable[tuple[str, bytes]]) -> bytes:
    """The zip of `files` ((name, content) pairs; names as member_name made them), sorted,
    with every parent directory's entry, fixed times and modes: reproducible."""
    members = dict(files)
    if not members:
        raise ArchiveError("python_archive: no files to pack")
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        for directory in _directories(members):
            info = zipfile.ZipInfo(directory, date_time=_FIXED_TIME)
            info.external_attr = _DIR_MODE << 16
            info.create_system = 3
            archive.writestr(info, b"")
        for name in sorted(members):
            info = zipfile.ZipInfo(name, date_time=_FIXED_TIME)
            info.external_attr = _FILE_MODE << 16
            info.create_system = 3
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, members[name], compresslevel=9)
    return out.getvalue()
