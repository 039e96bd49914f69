"""Run a role's task file (or render one of its templates) through ansible-playbook on
localhost, for the checks a role makes of its settings before it touches a host. Nothing
here changes the machine: the task files under test only assert and set facts, and
templates render into tmp_path."""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]


@dataclass
class PlaybookRun:
    rc: int
    out: str
    rendered: str | None = None

    @property
    def failed(self) -> bool:
        return self.rc != 0

    def recap(self, host: str = "localhost") -> dict[str, int]:
        """The PLAY RECAP's counts for `host` (ok, changed, failed, ...)."""
        line = next(
            item for item in self.out.splitlines() if item.startswith(f"{host} ") and "ok=" in item
        )
        return {k: int(v) for k, v in (part.split("=") for part in line.split(":", 1)[1].split())}

    def outcome(self, task: str) -> str:
        """What the task named `task` (its name, without the role prefix) did: `ok`,
        `changed`, `skipping`, `failed` or `fatal` (the first result line after its header)."""
        lines = iter(self.out.splitlines())
        for line in lines:
            if line.startswith("TASK [") and line.split("]", 1)[0].endswith(task):
                for result in lines:
                    word = result.split(":", 1)[0]
                    if word in ("ok", "changed", "skipping", "failed", "fatal"):
                        return word
        raise AssertionError(f"no result for task {task!r} in:\n{self.out[-3000:]}")


def ansible_playbook(
    tmp_path: Path,
    plays: list[dict[str, Any]],
    *args: str,
    env: dict[str, str] | None = None,
    timeout: int = 180,
) -> PlaybookRun:
    """`plays` run by ansible-playbook on localhost (local connection, this Python) with the
    project's ansible.cfg, a fact cache of its own and `args` (e.g. --check --diff); `env`
    adds to the environment (e.g. ANSIBLE_STRATEGY)."""
    playbook = tmp_path / "play.yml"
    playbook.write_text(json.dumps(plays))
    environment = {
        **os.environ,
        "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"),
        "ANSIBLE_LOCAL_TEMP": str(tmp_path / "ansible-local"),
        "ANSIBLE_REMOTE_TEMP": str(tmp_path / "ansible-remote"),
        # ansible.cfg keeps facts between runs; each test starts from none.
        "ANSIBLE_CACHE_PLUGIN": "ansible.builtin.memory",
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_FORCE_COLOR": "0",
        "ANSIBLE_LOCALHOST_WARNING": "false",
        **(env or {}),
    }
    proc = subprocess.run(
        [
            str(REPO / ".venv" / "bin" / "ansible-playbook"),
            "-i",
            "localhost,",
            "-c",
            "local",
            "-e",
            f"ansible_python_interpreter={sys.executable}",
            *args,
            str(playbook),
        ],
        capture_output=True,
        text=True,
        env=environment,
        timeout=timeout,
        check=False,
    )
    return PlaybookRun(proc.returncode, proc.stdout + proc.stderr)


def _ansible_playbook(
    tmp_path: Path,
    play: dict[str, Any],
    variables: dict[str, Any],
    args: tuple[str, ...] = (),
    env: dict[str, str] | None = None,
) -> PlaybookRun:
    extra = tmp_path / "vars.json"
    extra.write_text(json.dumps(variables))
    return ansible_playbook(
        tmp_path,
        [{"hosts": "localhost", "gather_facts": False, **play}],
        "-e",
        f"@{extra}",
        *args,
        env=env,
    )


def _role_vars_files(role: str) -> list[str]:
    """roles/<role>'s defaults and vars files, as a play's vars_files (those it has)."""
    files = [REPO / "roles" / role / kind / "main.yml" for kind in ("defaults", "vars")]
    return [str(path) for path in files if path.exists()]


def role_variable(tmp_path: Path, role: str, name: str, variables: dict[str, Any]) -> Any:
    """The value roles/<role> derives for its variable `name` (its defaults and vars loaded)
    from `variables` as extra vars (say, a registered result), read back as JSON."""
    play = {
        "vars_files": _role_vars_files(role),
        "tasks": [
            {
                "name": "Show the value",
                "ansible.builtin.debug": {"msg": f"VALUE={{{{ {name} | to_json | b64encode }}}}"},
            }
        ],
    }
    run = _ansible_playbook(tmp_path, play, variables)
    assert run.rc == 0, run.out[-3000:]
    found = re.search(r"VALUE=([A-Za-z0-9+/=]+)", run.out)
    assert found, run.out[-3000:]
    return json.loads(base64.b64decode(found[1]))


def run_role_tasks(
    tmp_path: Path,
    role: str,
    tasks_from: str,
    variables: dict[str, Any],
    *,
    after: list[dict[str, Any]] | None = None,
    public: bool = False,
    args: tuple[str, ...] = (),
    env: dict[str, str] | None = None,
) -> PlaybookRun:
    """Include `tasks_from` of localllm.fleet.<role> (its defaults and vars load as in a
    real run) with `variables` as extra vars, then run the tasks `after` (to show what the
    task file left behind; with `public`, they see the role's defaults and vars too).
    `args` go to ansible-playbook (e.g. --check), `env` adds to its environment."""
    task = {
        "name": f"{role} {tasks_from}",
        "ansible.builtin.include_role": {
            "name": f"localllm.fleet.{role}",
            "tasks_from": tasks_from,
            "public": public,
        },
    }
    return _ansible_playbook(tmp_path, {"tasks": [task, *(after or [])]}, variables, args, env)


def run_task_file(
    tmp_path: Path,
    role: str,
    task_file: str,
    variables: dict[str, Any],
    *args: str,
    after: list[dict[str, Any]] | None = None,
    facts: dict[str, Any] | None = None,
    env: dict[str, str] | None = None,
) -> PlaybookRun:
    """roles/<role>/tasks/<task_file> alone, with the role's defaults and vars and `variables`
    as extra vars (an include_role would bring the role's dependencies along, e.g. the fleet
    CA and HAProxy); `args` go to ansible-playbook (e.g. --check). The tasks `after` run next
    (to show what the file left behind). `facts` become the host's `ansible_facts` first (a
    cacheable set_fact), as if gathered: the platform a role checks, whatever machine runs
    the tests. `env` adds to ansible-playbook's environment (e.g. stand-ins first on PATH)."""
    before = (
        [{"name": "Facts", "ansible.builtin.set_fact": {**facts, "cacheable": True}}]
        if facts
        else []
    )
    play = {
        "vars_files": _role_vars_files(role),
        "tasks": [
            *before,
            {
                "name": f"{role} {task_file}",
                "ansible.builtin.include_tasks": {
                    "file": str(REPO / "roles" / role / "tasks" / task_file)
                },
            },
            *(after or []),
        ],
    }
    return _ansible_playbook(tmp_path, play, variables, args, env)


def render_template(
    tmp_path: Path, role: str, template: str, variables: dict[str, Any]
) -> PlaybookRun:
    """roles/<role>/templates/<template> rendered by the `template` module with the role's
    defaults and vars plus `variables`; `.rendered` is the text (None when it failed)."""
    dest = tmp_path / "rendered"
    play = {
        "vars_files": _role_vars_files(role),
        "tasks": [
            {
                "name": "Render",
                "ansible.builtin.template": {
                    "src": str(REPO / "roles" / role / "templates" / template),
                    "dest": str(dest),
                    "mode": "0600",
                },
            }
        ],
    }
    run = _ansible_playbook(tmp_path, play, variables)
    run.rendered = dest.read_text() if dest.exists() and not run.failed else None
    return run
