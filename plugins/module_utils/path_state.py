# Copyright (c) localllm.fleet contributors
# Apache License 2.0 (see galaxy.yml)
"""What a path on a host is, without following a link: one lstat, summarised for the
modules that compare a host's files with what a role leaves (ollama_install_info,
fleet_tls_state). Stdlib only."""

from __future__ import annotations

import os
import stat

__all__ = ["lstat_summary"]


def lstat_summary(path: str) -> dict | None:
    """None when nothing is there; else kind (`link`, `dir`, `file` or `other`), mode (the
    permission bits), uid and gid, and for a link its target (the link's text)."""
    try:
        seen = os.lstat(path)
    except FileNotFoundError:
        return None
    mode = seen.st_mode
    if stat.S_ISLNK(mode):
        kind = "link"
    elif stat.S_ISDIR(mode):
        kind = "dir"
    elif stat.S_ISREG(mode):
        kind = "file"
    else:
        kind = "other"
    summary = {
        "kind": kind,
        "mode": stat.S_IMODE(mode),
        "uid": seen.st_uid,
        "gid": seen.st_gid,
    }
    if kind == "link":
        summary["target"] = os.readlink(path)
    return summary
