"""Run localllm.fleet modules in-process the way Ansible invokes them, for the unit tests.

Ansible hands a module its arguments as `{"ANSIBLE_MODULE_ARGS": {...}}` (with `_ansible_*`
keys for check and diff mode) and reads one JSON object from its stdout; exit_json and
fail_json end the process. `run()` does exactly that inside the test process, so a module
goes through AnsibleModule's argument validation and its real main().
"""

from __future__ import annotations

import contextlib
import importlib
import io
import json
import os
import sys
from pathlib import Path
from typing import Any

from ansible.module_utils import basic

STANDINS = Path(__file__).resolve().parents[1] / "standins" / "ollama"
if str(STANDINS) not in sys.path:
    sys.path.insert(0, str(STANDINS))


def run(
    module: str, args: dict[str, Any], *, check: bool = False, diff: bool = False
) -> dict[str, Any]:
    """Run plugins/modules/<module>.py's main() with `args`; the JSON result it printed.

    A failed module gives a result with `failed: true` and `msg`, as Ansible would see it.
    """
    payload = {
        "ANSIBLE_MODULE_ARGS": {
            **args,
            "_ansible_check_mode": check,
            "_ansible_diff": diff,
            "_ansible_tmpdir": os.environ.get("TMPDIR", "/tmp"),
            "_ansible_remote_tmp": os.environ.get("TMPDIR", "/tmp"),
            "_ansible_keep_remote_files": False,
        }
    }
    target = importlib.import_module(f"ansible_collections.localllm.fleet.plugins.modules.{module}")
    out = io.StringIO()
    saved = (basic._ANSIBLE_ARGS, basic._ANSIBLE_PROFILE)
    basic._ANSIBLE_ARGS = json.dumps(payload).encode()
    basic._ANSIBLE_PROFILE = "legacy"
    try:
        with contextlib.redirect_stdout(out), contextlib.suppress(SystemExit):
            target.main()
    finally:
        basic._ANSIBLE_ARGS, basic._ANSIBLE_PROFILE = saved
    lines = [line for line in out.getvalue().splitlines() if line.startswith("{")]
    if not lines:
        raise AssertionError(f"{module} printed no result:\n{out.getvalue()}")
    return json.loads(lines[-1])


def store_listing(models: Path) -> dict[str, int]:
    """Every file below an OLLAMA_MODELS directory with its size (to prove nothing moved)."""
    if not models.exists():
        return {}
    return {
        str(path.relative_to(models)): path.stat().st_size
        for path in sorted(models.rglob("*"))
        if path.is_file()
    }


def store_snapshot(models: Path) -> dict[str, tuple[int, int]]:
    """Like store_listing, with modification times: a rewrite in place shows up too."""
    if not models.exists():
        return {}
    return {
        str(path.relative_to(models)): (path.stat().st_size, path.stat().st_mtime_ns)
        for path in sorted(models.rglob("*"))
        if path.is_file()
    }


def api_url(server: Any) -> str:
    return f"http://{server.host}"
