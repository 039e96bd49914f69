"""module_utils/atomic_file.write_atomic: readers see the old file or the new one, never a
half-written one, and no temporary file survives a failure."""

from __future__ import annotations

import os
import stat

import pytest

from ansible_collections.localllm.fleet.plugins.module_utils import atomic_file
from ansible_collections.localllm.fleet.plugins.module_utils.atomic_file import write_atomic


def test_text_and_bytes_replace_the_file_with_the_mode_asked(tmp_path):
    target = tmp_path / "keys.json"
    target.write_text("old")
    os.chmod(target, 0o644)
    write_atomic(str(target), "new ünïcode", 0o600, prefix=".keys-")
    assert target.read_text(encoding="utf-8") == "new ünïcode"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    write_atomic(str(target), b"\x00\x01bytes", 0o640)
    assert target.read_bytes() == b"\x00\x01bytes"
    assert stat.S_IMODE(target.stat().st_mode) == 0o640
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keys.json"]


def test_the_new_file_is_a_new_inode_so_an_open_reader_keeps_the_old_content(tmp_path):
    target = tmp_path / "ollama.prom"
    target.write_text("old 1\n")
    with target.open() as reader:
        write_atomic(str(target), "new 2\n", 0o644, prefix=".ollama.prom.", suffix=".tmp")
        assert reader.read() == "old 1\n"
    assert target.read_text() == "new 2\n"


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path, monkeypatch):
    target = tmp_path / "manifest"
    target.write_text("good")

    def refuse(*_args, **_kwargs):
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(atomic_file.os, "chown", refuse)
    with pytest.raises(PermissionError):
        write_atomic(str(target), "bad", 0o644, uid=12345, gid=12345, prefix=".manifest-")
    assert target.read_text() == "good"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["manifest"]


def test_owner_is_left_alone_unless_asked_and_the_directory_can_be_synced(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(atomic_file.os, "chown", lambda *a: calls.append(a))
    write_atomic(str(tmp_path / "a"), "x", 0o644, sync_directory=True)
    assert calls == []
    write_atomic(str(tmp_path / "b"), "x", 0o644, uid=os.getuid(), gid=-1)
    assert len(calls) == 1
    assert calls[0][1:] == (os.getuid(), -1)


def test_a_missing_directory_is_an_error_not_a_silent_success(tmp_path):
    with pytest.raises(FileNotFoundError):
        write_atomic(str(tmp_path / "absent" / "file"), "x", 0o644)
