"""Meta tasks whose condition Ansible ignores. `meta: reset_connection` (ansible-core warns
"does not support when conditional"), `refresh_inventory`, `noop` and `clear_*` run whatever
their `when` says, and a `when` on a block or on an `import_tasks` reaches them the same way:
ignored. The firewall role had its
`reset_connection` inside a conditional block, so every converge dropped every host's SSH
connection (and the next task paid a new one). Conditional meta tasks must sit in a file that
is *included* (include_tasks evaluates the condition once, before reading the file)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
# Meta actions that honour `when` with the pinned ansible-core (flush_handlers: checked with a
# pending handler that a `when: false` flush left for the end of the play).
HONOURS_WHEN = {"end_play", "end_host", "end_batch", "end_role", "flush_handlers"}
TASK_FILES = sorted(
    [
        *REPO.glob("roles/*/tasks/*.yml"),
        *REPO.glob("roles/*/handlers/*.yml"),
        *REPO.glob("playbooks/*.yml"),
    ]
)


def _tasks(node) -> list[dict]:
    """The task list of a task file or every play's pre_tasks/tasks/post_tasks/handlers."""
    if not isinstance(node, list):
        return []
    plays = [item for item in node if isinstance(item, dict) and "hosts" in item]
    if plays:
        found = []
        for play in plays:
            for key in ("pre_tasks", "tasks", "post_tasks", "handlers"):
                found += play.get(key) or []
        return found
    return node


def _meta(task: dict) -> str | None:
    for key in ("ansible.builtin.meta", "meta"):
        if key in task:
            return str(task[key])
    return None


def ignored_conditions(
    path: Path, tasks: list, inherited: bool = False, seen: frozenset = frozenset()
) -> list[str]:
    """Where a condition (the task's own or inherited from a block or an import) reaches a
    meta task that ignores it."""
    problems = []
    for task in tasks:
        if not isinstance(task, dict):
            continue
        conditional = inherited or "when" in task
        action = _meta(task)
        if action is not None and conditional and action not in HONOURS_WHEN:
            where = path.relative_to(REPO) if path.is_relative_to(REPO) else path
            name = task.get("name", "unnamed")
            problems.append(f"{where}: meta {action} ({name}) has a condition Ansible ignores")
        for key in ("block", "rescue", "always"):
            if key in task:
                problems += ignored_conditions(path, task[key], conditional, seen)
        for key in ("ansible.builtin.import_tasks", "import_tasks"):
            if key in task and conditional:
                target = task[key]["file"] if isinstance(task[key], dict) else task[key]
                imported = (path.parent / str(target)).resolve()
                if imported.is_file() and imported not in seen:
                    problems += ignored_conditions(
                        imported,
                        _tasks(yaml.safe_load(imported.read_text())),
                        True,
                        seen | {imported},
                    )
    return problems


@pytest.mark.parametrize("path", TASK_FILES, ids=lambda p: str(p.relative_to(REPO)))
def test_no_meta_task_carries_a_condition_ansible_would_ignore(path):
    assert ignored_conditions(path, _tasks(yaml.safe_load(path.read_text()))) == []


def test_the_check_finds_the_firewall_s_old_mistake(tmp_path):
    # The shape it had: reset_connection in a block with a `when`.
    old = [
        {
            "name": "Load the rules, keeping the control node able to reconnect",
            "when": "rules is changed",
            "block": [
                {
                    "name": "Load",
                    "ansible.builtin.systemd_service": {"name": "x", "state": "restarted"},
                },
                {"name": "Drop the SSH connection", "ansible.builtin.meta": "reset_connection"},
            ],
        }
    ]
    (tmp_path / "reload.yml").write_text(
        yaml.safe_dump([{"ansible.builtin.meta": "reset_connection"}])
    )
    imported = [{"ansible.builtin.import_tasks": "reload.yml", "when": "x"}]
    included = [{"ansible.builtin.include_tasks": "reload.yml", "when": "x"}]
    main = tmp_path / "main.yml"
    assert len(ignored_conditions(main, old)) == 1
    assert ignored_conditions(main, [{"ansible.builtin.meta": "end_host", "when": "x"}]) == []
    # a conditional import hands its condition to the imported meta task; an include does not
    assert len(ignored_conditions(main, imported)) == 1
    assert ignored_conditions(main, included) == []
    assert ignored_conditions(main, [{"ansible.builtin.meta": "reset_connection"}]) == []
