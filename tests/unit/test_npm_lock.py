"""scripts/npm/: the Node tools of the tests (gitlab-ci-local, for molecule gitops_default) are
pinned exactly, every package of the lock carries its integrity hash (npm ci refuses a
tarball that does not match), and the lock names no registry: npm takes the machine's."""

from __future__ import annotations

import json
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
NPM = REPO / "scripts" / "npm"


def test_gitlab_ci_local_is_pinned_to_one_version():
    wanted = json.loads((NPM / "package.json").read_text())["dependencies"]
    assert set(wanted) == {"gitlab-ci-local"}
    assert re.fullmatch(r"\d+\.\d+\.\d+", wanted["gitlab-ci-local"]), wanted
    lock = json.loads((NPM / "package-lock.json").read_text())
    assert lock["packages"][""]["dependencies"] == wanted
    assert lock["packages"]["node_modules/gitlab-ci-local"]["version"] == wanted["gitlab-ci-local"]


def test_every_locked_package_has_an_integrity_hash_and_no_registry_address():
    lock = json.loads((NPM / "package-lock.json").read_text())
    packages = {name: entry for name, entry in lock["packages"].items() if name}
    assert len(packages) > 50  # gitlab-ci-local and its dependencies, not an empty lock
    for name, entry in packages.items():
        assert entry.get("integrity", "").startswith("sha512-"), name
        assert "resolved" not in entry, name  # a tarball address would name a registry
