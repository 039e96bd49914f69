#!/usr/bin/python
# Copyright (c) localllm.fleet contributors
# Apache License 2.0 (see galaxy.yml)
"""Ansible module localllm.fleet.download: resumable, verified download of big files."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: download
short_description: Download a big file over HTTP(S) in resumable slices, verified by sha256
version_added: "0.1.0"
description:
  - Downloads O(url) to O(dest) for files too big for M(ansible.builtin.get_url) to fetch in
    one go (model weights of tens or hundreds of GB).
  - Bytes go to C(<dest>.part). Each call transfers for at most O(max_seconds), then returns
    C(done=false) with a progress line; the next call resumes with an HTTP C(Range) request
    (a server that ignores ranges makes it start over). When all bytes are there, the
    sha256 of the whole file is checked against O(checksum) and the file is renamed to
    O(dest) atomically, with O(owner), O(group) and O(mode) already applied.
  - A wrong download is never installed. On a checksum mismatch the C(.part) file is
    deleted and the task fails naming both digests.
  - Before a byte is written, the size the server announces is checked against the free
    space beside O(dest) (the task fails with what is needed and what is free); a disk that
    fills up anyway removes the C(.part) rather than leave it filling the disk.
  - Only C(http) and C(https) are spoken, redirects included. Credentials in O(url)
    (C(https://user:token@host/...)) are used, and shown as C(***) in every message.
  - An O(dest) that already has the right digest is left alone and nothing is fetched.
    The digest of a verified file is remembered (by device, inode, size and times, in
    C(~/.cache/localllm-fleet/) of the remote user), so a converged host does not hash
    hundreds of GB on every run, and M(localllm.fleet.ollama_model) does not hash the
    file again when it imports it.
author:
  - localllm.fleet contributors
options:
  url:
    description:
      - HTTP or HTTPS URL of the file. Redirects to other C(http) or C(https) URLs are
        followed (at most 10); a redirect to another scheme fails the task.
    type: str
    required: true
  dest:
    description:
      - Absolute path of the file to create (a relative path is refused). Its directory
        must exist.
    type: path
    required: true
  checksum:
    description:
      - The expected digest, C(sha256:<64 hex digits>) or the 64 hex digits alone (case does
        not matter).
    type: str
    required: true
  max_seconds:
    description:
      - Stop transferring after this many seconds and return C(done=false); the next call
        resumes. V(0) transfers until done. Verifying the finished file is not counted.
    type: int
    default: 60
  timeout:
    description:
      - Seconds to wait for the server to answer or to send more bytes (at least V(1)).
    type: int
    default: 60
  validate_certs:
    description:
      - Verify the server's TLS certificate.
    type: bool
    default: true
extends_documentation_fragment:
  - ansible.builtin.files
notes:
  - In check mode nothing is downloaded or written; C(changed) says whether O(dest) would
    change and C(done) whether it is already complete, so a retry loop must also stop on
    C(ansible_check_mode).
  - While a download is not done, the task result is marked to be shown on every C(until:)
    retry at default verbosity, so the progress line appears in the play output.
seealso:
  - module: ansible.builtin.get_url
  - module: localllm.fleet.ollama_model
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
"""

EXAMPLES = r"""
- name: Download a GGUF file from the mirror, printing progress every minute
  localllm.fleet.download:
    url: http://mirror.example.internal/models/deepseek-r1-32b-q4_k_m.gguf
    dest: /var/cache/localllm-fleet/models/deepseek-r1-32b-q4_k_m.gguf
    checksum: sha256:9bf2ba5e1b4b4a8f0b9e4f36f7f7c1a9f0d0d1e4b4c2f6a1e3d5c7b9a1f3e5d7
    owner: root
    group: ollama
    mode: "0640"
  register: download
  until: download.done or ansible_check_mode
  retries: 600
  delay: 0
"""

RETURN = r"""
done:
  description: Whether O(dest) is complete and verified.
  returned: always
  type: bool
bytes:
  description: Bytes downloaded so far (the size of O(dest) once done).
  returned: always
  type: int
total:
  description: The file's size, once the server has said it (C(null) before).
  returned: always
  type: int
progress:
  description: "One human line, e.g. C(x.gguf: 12.3 GB of 19.9 GB (62%), 85.1 MB/s)."
  returned: always
  type: str
checksum:
  description: The verified digest (C(sha256:<hex>)) once done.
  returned: always
  type: str
"""

import contextlib
import errno
import hashlib
import os
import re
import time
import urllib.error
import urllib.parse
from typing import Any

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.urls import open_url

from ansible_collections.localllm.fleet.plugins.module_utils.digest_cache import (
    DigestCache,
    sha256_file,
)
from ansible_collections.localllm.fleet.plugins.module_utils.ollama_api import (
    connection_reason,
)
from ansible_collections.localllm.fleet.plugins.module_utils.ollama_release import (
    ReleaseError,
    valid_sha256,
)
from ansible_collections.localllm.fleet.plugins.module_utils.progress import (
    human_bytes,
    progress_line,
    space_problem,
)
from ansible_collections.localllm.fleet.plugins.module_utils.trust import (
    redact_text,
    redact_url,
    url_secrets,
)

_CONTENT_RANGE = re.compile(r"^bytes (?:([0-9]{1,20})-([0-9]{1,20})|\*)/([0-9]{1,20}|\*)$")
_BLOCK = 1 << 20
_RETRIES = 5
_MAX_REDIRECTS = 10
_REDIRECTS = (301, 302, 303, 307, 308)
_DISK_FULL = (errno.ENOSPC, errno.EDQUOT)


class DownloadError(Exception):
    """A failure with its message; `size` is what the .part held, when it was removed."""

    def __init__(self, message: str, size: int | None = None) -> None:
        super().__init__(message)
        self.size = size


def content_range(header: str | None) -> tuple[int | None, int | None]:
    """(first byte, total size) from a Content-Range header; None where absent or `*`."""
    match = _CONTENT_RANGE.match((header or "").strip())
    if not match:
        return None, None
    first = int(match.group(1)) if match.group(1) is not None else None
    total = int(match.group(3)) if match.group(3) != "*" else None
    return first, total


class Transfer:
    """One call's worth of downloading into the .part file."""

    def __init__(self, module: AnsibleModule, url: str, part: str, deadline: float | None):
        self.module = module
        self.url = url
        self.shown = redact_url(url)  # what messages say: never the credentials
        self.part = part
        self.deadline = deadline
        self.total: int | None = None
        self.moved = 0
        self.hasher: Any = None  # sha256 of the whole file, when this call started at 0
        self.started = time.monotonic()

    @property
    def size(self) -> int:
        try:
            return os.path.getsize(self.part)
        except OSError:
            return 0

    def time_left(self) -> bool:
        return self.deadline is None or time.monotonic() < self.deadline

    def _open(self, offset: int) -> Any:
        """The answer to a GET from `offset`, following http(s) redirects ourselves (urllib
        would follow one to ftp://)."""
        params = self.module.params
        headers = {"Range": f"bytes={offset}-"} if offset else {}
        url = self.url
        for _hop in range(_MAX_REDIRECTS + 1):
            try:
                return open_url(
                    url,
                    headers=headers,
                    timeout=params["timeout"],
                    validate_certs=params["validate_certs"],
                    follow_redirects="none",
                    decompress=False,
                )
            except urllib.error.HTTPError as err:
                if err.code in _REDIRECTS:
                    url = self._redirect(url, err)
                    continue
                if err.code == 416 and offset:
                    return err  # the caller decides from Content-Range
                raise DownloadError(
                    f"cannot download {self.shown}: HTTP {err.code} {redact_text(err.reason, url)}"
                ) from err
            except (urllib.error.URLError, OSError, ValueError) as err:
                reason = getattr(err, "reason", None) or err  # URLError wraps the socket's error
                text = connection_reason(reason) if isinstance(reason, BaseException) else reason
                raise DownloadError(
                    f"cannot download {self.shown}: {redact_text(redact_text(text, url), self.url)}"
                ) from err
        raise DownloadError(f"cannot download {self.shown}: more than {_MAX_REDIRECTS} redirects")

    def _redirect(self, url: str, err: urllib.error.HTTPError) -> str:
        location = err.headers.get("Location") if err.headers else None
        with contextlib.suppress(Exception):
            err.close()
        if not location:
            raise DownloadError(f"cannot download {self.shown}: HTTP {err.code} without Location")
        target = urllib.parse.urljoin(url, location.strip())
        if urllib.parse.urlsplit(target).scheme.lower() not in ("http", "https"):
            raise DownloadError(
                f"cannot download {self.shown}: redirected to {redact_url(target)}: only http "
                "and https are followed"
            )
        return target

    def step(self) -> bool:
        """Transfer until the file is complete (True), the deadline passes or the connection
        breaks (False). Raises DownloadError for answers that retrying cannot fix."""
        offset = self.size
        resp = self._open(offset)
        try:
            status = getattr(resp, "status", None) or resp.getcode()
            if status == 416:  # nothing after `offset`: the .part is complete, or too long
                _first, total = content_range(resp.headers.get("Content-Range"))
                if total is None or total == offset:
                    # Complete as far as the server says; the sha256 check in finish() decides.
                    self.total = offset
                    return True
                os.unlink(self.part)  # longer than the file: it cannot be ours
                raise DownloadError(
                    f"{self.part} was longer than {self.shown}; it was removed, run again"
                )
            length = resp.headers.get("Content-Length")
            if status == 206:
                first, total = content_range(resp.headers.get("Content-Range"))
                if first is None or first not in (0, offset):
                    # Not the range asked for: start over cleanly (the next attempt asks
                    # from byte 0) rather than keep a .part that fails every run.
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(self.part)
                    return False
                offset = first
                self.total = total
                mode = "ab" if offset else "wb"
            else:  # 200: the server ignores ranges; start again from the first byte
                offset = 0
                length = (length or "").strip()
                self.total = int(length) if length.isdigit() and len(length) <= 20 else None
                mode = "wb"
            if self.total is not None:
                problem = space_problem(
                    os.path.dirname(self.part), self.total - offset, os.path.basename(self.dest)
                )
                if problem:
                    raise DownloadError(problem)
            if offset == 0:
                self.hasher = hashlib.sha256()
            self._write(resp, mode)
            size = self.size
            if self.total is None:
                return self.time_left()  # EOF without a known size: that was all of it
            return size >= self.total
        finally:
            with contextlib.suppress(Exception):
                resp.close()

    @property
    def dest(self) -> str:
        return self.part[: -len(".part")]

    def _write(self, resp: Any, mode: str) -> None:
        """Copy the answer into the .part while time is left. A disk that fills up removes
        the .part (DownloadError): a partial file must not keep the disk full."""
        read = getattr(resp, "read1", None) or resp.read  # returns what has arrived
        try:
            with open(self.part, mode) as handle:
                while self.time_left():
                    try:
                        block = read(_BLOCK)
                    except (OSError, ValueError):
                        break  # the connection broke: the caller retries from the .part
                    if not block:
                        break
                    handle.write(block)
                    self.moved += len(block)
                    if self.hasher is not None:
                        self.hasher.update(block)
                handle.flush()
                os.fsync(handle.fileno())
        except OSError as err:
            reached = self.size
            if err.errno in _DISK_FULL:
                with contextlib.suppress(OSError):
                    os.unlink(self.part)
                raise DownloadError(
                    f"the disk filled up while writing {self.part} ({err.strerror}) after "
                    f"{human_bytes(reached)}; the partial download was removed. Free some "
                    "space and run again"
                ) from err
            raise DownloadError(f"cannot write {self.part}: {err.strerror or err}") from err

    def rate(self) -> float | None:
        elapsed = time.monotonic() - self.started
        return self.moved / elapsed if self.moved and elapsed > 0 else None


def finish(
    module: AnsibleModule, transfer: Transfer, dest: str, expected: str, hashes: DigestCache
) -> None:
    """Verify the complete .part and install it as dest (DownloadError on a mismatch)."""
    part = transfer.part
    if transfer.hasher is not None and transfer.total in (None, transfer.size):
        actual = "sha256:" + transfer.hasher.hexdigest()
    else:
        actual = sha256_file(part)
    if actual != expected:
        size = transfer.size  # before the file goes
        with contextlib.suppress(FileNotFoundError):
            os.unlink(part)
        raise DownloadError(
            f"checksum mismatch for {transfer.shown}: expected {expected}, got {actual} "
            f"({human_bytes(size)}); the download was deleted",
            size,
        )
    file_args = module.load_file_common_arguments(module.params, path=part)
    module.set_fs_attributes_if_different(file_args, False)
    os.replace(part, dest)
    directory = os.open(os.path.dirname(dest) or ".", os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
    hashes.remember(dest, expected)


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "url": {"type": "str", "required": True},
            "dest": {"type": "path", "required": True},
            "checksum": {"type": "str", "required": True},
            "max_seconds": {"type": "int", "default": 60},
            "timeout": {"type": "int", "default": 60},
            "validate_certs": {"type": "bool", "default": True},
        },
        add_file_common_args=True,
        supports_check_mode=True,
    )
    params = module.params
    url, dest = params["url"], params["dest"]
    module.no_log_values.update(url_secrets(url))  # masked in every result, invocation too
    shown = redact_url(url)
    label = os.path.basename(dest)
    try:
        expected = "sha256:" + valid_sha256(params["checksum"])
    except ReleaseError as err:
        module.fail_json(msg=f"checksum {err}")
    if not url.lower().startswith(("http://", "https://")):
        module.fail_json(msg=f"url must be http:// or https://, not {shown!r}")
    if not os.path.isabs(dest):
        module.fail_json(msg=f"dest must be an absolute path, not {dest!r}")
    if params["max_seconds"] < 0:
        module.fail_json(msg="max_seconds must be 0 (no limit) or more")
    if params["timeout"] < 1:  # 0 would make every socket non-blocking
        module.fail_json(msg=f"timeout must be at least 1 second, not {params['timeout']}")
    directory = os.path.dirname(dest) or "."
    if not os.path.isdir(directory):
        module.fail_json(msg=f"the directory of dest does not exist: {directory}")
    if os.path.isdir(dest):
        module.fail_json(msg=f"dest is a directory, give the file's path: {dest}")

    hashes = DigestCache(writable=not module.check_mode)
    part = dest + ".part"
    result: dict[str, Any] = {"checksum": None}
    if os.path.isfile(dest):
        actual = hashes.digest(dest)
        if actual == expected:
            hashes.save()
            file_args = module.load_file_common_arguments(params)
            changed = module.set_fs_attributes_if_different(file_args, False)
            size = os.path.getsize(dest)
            module.exit_json(
                changed=changed,
                done=True,
                bytes=size,
                total=size,
                checksum=expected,
                progress=f"{label}: present and verified ({human_bytes(size)})",
            )
        result["msg"] = f"{dest} has {actual}, not {expected}: downloading it again"
    if module.check_mode:
        size = os.path.getsize(part) if os.path.isfile(part) else 0
        module.exit_json(
            changed=True,
            done=False,
            bytes=size,
            total=None,
            progress=f"{label}: would be downloaded from {shown}",
            **result,
        )

    deadline = time.monotonic() + params["max_seconds"] if params["max_seconds"] else None
    transfer = Transfer(module, url, part, deadline)
    complete = False
    failures = 0
    try:
        while not complete and transfer.time_left():
            complete = transfer.step()
            if not complete and transfer.time_left():
                failures += 1  # the connection broke: try again while time is left
                if failures > _RETRIES:
                    raise DownloadError(
                        f"cannot download {shown}: the connection broke {failures} times"
                    )
                time.sleep(min(failures, 5))
        if complete:
            finish(module, transfer, dest, expected, hashes)
            result["checksum"] = expected
    except DownloadError as err:
        hashes.save()
        size = err.size if err.size is not None else transfer.size
        module.fail_json(msg=str(err), bytes=size, total=transfer.total)
    hashes.save()
    size = os.path.getsize(dest) if complete else transfer.size
    line = progress_line(label, size, transfer.total, transfer.rate())
    module.exit_json(
        changed=complete or transfer.moved > 0,
        done=complete,
        bytes=size,
        total=transfer.total if not complete else size,
        progress=line + (", verified" if complete else ""),
        **result,
    )


if __name__ == "__main__":
    main()
