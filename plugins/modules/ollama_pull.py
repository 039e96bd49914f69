#!/usr/bin/python
# Copyright (c) localllm.fleet contributors
# Apache License 2.0 (see galaxy.yml)
"""Ansible module localllm.fleet.ollama_pull: pull a model in resumable slices."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: ollama_pull
short_description: Pull an Ollama model from a registry, in resumable time slices
version_added: "0.1.0"
description:
  - Pulls O(name) through the host's Ollama API (C(POST /api/pull)), from the public
    library or from a private registry (C(host[:port]/namespace/model:tag)).
  - A pull of a big model takes hours. The module streams Ollama's progress for at most
    O(max_seconds), then disconnects and returns C(done=false) with a progress line.
    Ollama keeps what it has downloaded (C(sha256-<hex>-partial) files with their part
    bookkeeping) and the next call resumes where this one stopped, so a task that loops
    C(until) C(result.done) reports progress between slices and survives interruptions.
  - Without O(update), a model that is already on the host is left alone and nothing is
    contacted but the local API.
author:
  - localllm.fleet contributors
options:
  name:
    description:
      - The model, e.g. C(deepseek-r1:32b) or C(mirror:8080/library/deepseek-r1:32b).
    type: str
    required: true
  insecure:
    description:
      - Allow plain HTTP to a private registry (Ollama's C(--insecure)).
    type: bool
    default: false
  update:
    description:
      - When the model exists, pull it again to pick up a newer version of the same tag
        (only changed blobs are downloaded). V(false) leaves an existing model alone.
    type: bool
    default: false
  max_seconds:
    description:
      - Stop after this many seconds and return C(done=false); the next call resumes.
        V(0) waits until the pull is complete.
    type: int
    default: 60
  models_dir:
    description:
      - The Ollama store on the host (C(OLLAMA_MODELS)). When given, the sizes Ollama
        announces for the model's layers are checked against the free space there as they
        arrive; a pull that cannot fit is stopped at once (Ollama keeps what it has for a
        later resume) and fails with what is needed and what is free, instead of filling
        the disk.
    type: path
  plan_without_ollama:
    description:
      - In check mode, when Ollama does not answer, look for the model in O(models_dir) on
        disk and warn instead of failing (see the notes). A task forced into check mode in a
        real run, only to ask what a host lacks, sets V(false) to fail at once as outside
        check mode.
    type: bool
    default: true
notes:
  - In check mode nothing is pulled; C(changed) says whether the model is missing (with
    O(update), whether the registry has something newer cannot be known without pulling,
    so C(changed=false)). C(done) tells whether the model is complete, so a retry loop
    must also stop on C(ansible_check_mode).
  - In check mode on a host whose Ollama does not answer (a host new to the fleet, where a
    real run installs Ollama first), the module does not fail unless
    O(plan_without_ollama=false). It looks for the model's
    manifest in O(models_dir) on disk (C(changed=false) when it is there, else C(changed=true))
    and warns that Ollama could not be asked. Outside check mode that is an error.
  - While a pull is not done, the task result is marked to be shown on every C(until:)
    retry at default verbosity, so the progress line appears in the play output.
  - A failed pull (unknown model, registry unreachable, TLS) fails with Ollama's own error
    text and the model name.
extends_documentation_fragment:
  - localllm.fleet.ollama_api
seealso:
  - module: localllm.fleet.ollama_model
  - module: localllm.fleet.ollama_bundle
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
"""

EXAMPLES = r"""
- name: Pull a model, printing progress every minute, for up to six hours
  localllm.fleet.ollama_pull:
    name: deepseek-r1:32b
    max_seconds: 60
  register: pull
  until: pull.done or ansible_check_mode
  retries: 360
  delay: 0

- name: Pull from a private registry over plain HTTP
  localllm.fleet.ollama_pull:
    name: mirror:8080/library/qwq:32b
    insecure: true
    max_seconds: 0
"""

RETURN = r"""
done:
  description: Whether the model is complete on the host.
  returned: always
  type: bool
status:
  description:
    - Ollama's last status line in this call (C(success), C(pulling 96c415656d37), ...);
      empty when the slice ended before Ollama sent one.
    - When nothing was pulled, one the module sets itself instead. C(present) means the
      model is already on the host and O(update) is false, or the check mode is on. C(not
      pulled (check mode)) means the model is missing and the check mode is on.
  returned: always
  type: str
completed:
  description: Bytes of the model's blobs on the host so far (of the blobs seen so far).
  returned: always
  type: int
total:
  description: Bytes of the model's blobs (of the blobs Ollama has started on so far).
  returned: always
  type: int
progress:
  description: "One human line, e.g. C(deepseek-r1:32b: 12.3 GB of 19.9 GB (62%), 85.1 MB/s)."
  returned: always
  type: str
digest:
  description:
    - The model's manifest digest as C(/api/tags) reports it.
    - Once done, that of the model now on the host. While not done, that of the version
      the host had before the pull (C(null) when the model is new), so it changes only
      when a pull completes. C(null) in check mode for a model that is missing.
  returned: always
  type: str
"""

import os
import time
from typing import Any

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.localllm.fleet.plugins.module_utils.ollama_api import (
    API_ARGUMENT_SPEC,
    DeadlineReached,
    ModelName,
    OllamaClient,
    OllamaError,
    OllamaUnreachable,
)
from ansible_collections.localllm.fleet.plugins.module_utils.progress import (
    human_bytes,
    progress_line,
    space_problem,
)

# Upstream race: a pull that starts while the previous (disconnected) one is still being
# cancelled can attach to the dying download and fail with this text; once more then works.
_CANCELED = "context canceled"


def _count(value: Any) -> int | None:
    """A byte count from Ollama's answer: an int from 0 up, else None (ignored)."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    return None


class PullTracker:
    """Sums Ollama's per-blob progress lines into one count and a rate."""

    def __init__(self) -> None:
        self.totals: dict[str, int] = {}
        self.completed: dict[str, int] = {}
        self.first: dict[str, int] = {}
        self.status = ""
        self.done = False
        self.started = time.monotonic()

    def add(self, item: dict[str, Any]) -> None:
        self.status = str(item.get("status") or self.status)[:200]
        digest = item.get("digest")
        total = _count(item.get("total"))
        if isinstance(digest, str) and digest and total is not None:
            self.totals[digest] = total
            done = min(_count(item.get("completed")) or 0, total)
            self.first.setdefault(digest, done)
            self.completed[digest] = max(done, self.completed.get(digest, 0))
        if self.status == "success":
            self.done = True

    @property
    def total(self) -> int:
        return sum(self.totals.values())

    @property
    def bytes_done(self) -> int:
        return sum(self.completed.values())

    @property
    def remaining(self) -> int:
        """Bytes still to come for the layers announced so far."""
        return sum(max(total - self.completed.get(d, 0), 0) for d, total in self.totals.items())

    @property
    def transferred(self) -> int:
        """Bytes this call moved (a resumed blob starts from what was already there)."""
        return sum(max(done - self.first.get(d, 0), 0) for d, done in self.completed.items())

    def rate(self) -> float | None:
        elapsed = time.monotonic() - self.started
        return self.transferred / elapsed if elapsed > 0 and self.transferred else None


class NoRoom(Exception):
    """The model does not fit in the store: the pull was stopped (message says why)."""


def pull(
    client: OllamaClient,
    name: str,
    insecure: bool,
    max_seconds: int,
    models_dir: str | None = None,
) -> PullTracker:
    """Stream one slice of the pull; OllamaError with Ollama's text when it fails, NoRoom
    when the layers announced so far need more than the store has free."""
    deadline = time.monotonic() + max_seconds if max_seconds > 0 else None
    for attempt in range(2):
        tracker = PullTracker()
        announced = 0
        try:
            for item in client.pull(name, insecure=insecure, deadline=deadline):
                tracker.add(item)
                if models_dir and tracker.total > announced:
                    announced = tracker.total
                    problem = space_problem(models_dir, tracker.remaining, name)
                    if problem:
                        raise NoRoom(problem)  # leaving the stream cancels the pull
        except DeadlineReached:
            return tracker
        except OllamaError as err:
            if attempt == 0 and str(err).endswith(_CANCELED):
                time.sleep(1)
                continue
            raise
        return tracker
    return tracker  # pragma: no cover - the loop always returns or raises


def plan_without_ollama(label: str, name: ModelName, models_dir: str | None) -> dict:
    """Check mode on a host whose Ollama does not answer: a host new to the fleet, where the
    real run installs and starts Ollama before it pulls. The model store on disk says whether
    the model is there (its manifest)."""
    manifest = os.path.join(models_dir, "manifests", name.manifest_path()) if models_dir else ""
    present = bool(manifest) and os.path.isfile(manifest)
    return {
        "changed": not present,
        "done": present,
        "status": "present" if present else "not pulled (check mode)",
        "completed": 0,
        "total": 0,
        "progress": f"{label}: in the model store on disk (Ollama does not answer)"
        if present
        else f"{label}: would be pulled (Ollama does not answer yet)",
        "digest": None,
    }


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "name": {"type": "str", "required": True},
            "insecure": {"type": "bool", "default": False},
            "update": {"type": "bool", "default": False},
            "max_seconds": {"type": "int", "default": 60},
            "models_dir": {"type": "path"},
            "plan_without_ollama": {"type": "bool", "default": True},
            **API_ARGUMENT_SPEC,
        },
        supports_check_mode=True,
    )
    params = module.params
    if params["max_seconds"] < 0:
        module.fail_json(msg="max_seconds must be 0 (no limit) or more")
    try:
        name = ModelName.parse(params["name"])
        client = OllamaClient(params["api_url"], params["timeout"])
    except ValueError as err:
        module.fail_json(msg=str(err))
    label = params["name"]
    try:
        try:
            existing = client.find(name)
        except OllamaUnreachable as err:
            if not (module.check_mode and params["plan_without_ollama"]):
                raise
            module.warn(
                f"Ollama does not answer at {err.url} ({err.reason}): in check mode {label} is"
                " looked for in the model store on disk"
                f" ({params['models_dir'] or 'models_dir not given'}); a real run starts Ollama"
                " first"
            )
            module.exit_json(**plan_without_ollama(label, name, params["models_dir"]))
        if existing is not None and (not params["update"] or module.check_mode):
            size = _count(existing.get("size")) or 0
            module.exit_json(
                changed=False,
                done=True,
                status="present",
                completed=size,
                total=size,
                progress=f"{label}: on the host ({human_bytes(size)})",
                digest=existing.get("digest"),
            )
        if module.check_mode:
            module.exit_json(
                changed=True,
                done=False,
                status="not pulled (check mode)",
                completed=0,
                total=0,
                progress=f"{label}: would be pulled",
                digest=None,
            )
        tracker = pull(
            client, params["name"], params["insecure"], params["max_seconds"], params["models_dir"]
        )
        after = client.find(name) if tracker.done else None
    except NoRoom as err:
        module.fail_json(msg=str(err), name=label)
    except OllamaUnreachable as err:
        module.fail_json(msg=str(err), name=label)
    except OllamaError as err:
        module.fail_json(msg=f"cannot pull {label}: {err}", name=label)

    old_digest = existing.get("digest") if existing else None
    new_digest = after.get("digest") if after else None
    line = progress_line(label, tracker.bytes_done, tracker.total, tracker.rate())
    if tracker.done:
        changed = new_digest != old_digest
        line += ", done" if changed else ", already up to date"
    else:
        changed = tracker.transferred > 0
        if not tracker.total:
            line = f"{label}: {tracker.status or 'starting'}"
    module.exit_json(
        changed=changed,
        done=tracker.done,
        status=tracker.status,
        completed=tracker.bytes_done,
        total=tracker.total,
        progress=line,
        digest=new_digest if tracker.done else old_digest,
    )


if __name__ == "__main__":
    main()
