DOCUMENTATION = r"""
name: preload
type: aggregate
short_description: Load what every forked worker would load again, once, in the main process
description:
  - Ansible runs each task for each host in a worker process forked from the main one, and
    what a worker loads ends with it.
  - A worker that meets one of this collection's filters loads every filter file of the
    collection (ansible-core's Jinja2 plugin loader reads them all, in case a later file
    overrides a name) and the module_utils they import. On the lab fleet's no-op converge,
    loading them once in the main process saved about a sixth of the control node's CPU time.
  - A worker of Mitogen's strategy that runs a collection's module (community.crypto, this
    collection's) first lists every installed collection, which imports each collection's
    package and parses its C(meta/runtime.yml), about 0.1 s of CPU per such task with the
    C(ansible) package's hundred collections installed. Importing them once in the main
    process (about 0.06 s) saves that in every worker. Ansible's own strategy imports only
    the collections a task uses, and finds them already imported.
  - This callback does both when the playbook starts, so that every worker inherits them
    already loaded (docs/scaling.md).
  - "It also keeps the code Jinja compiles for the rest of the run: ansible-core compiles
    every template string each time it renders it, in a worker that ends with the task. A
    worker sends what it compiled to the main process, which takes it in before each task; and
    the main process compiles a task's own templates and conditions (and a role's defaults at
    its first task) before the task's workers are forked. So the workers compile almost
    nothing (on the lab fleet's no-op, 235 compiles instead of 9,430). Nothing is written to
    disk. Only with the ansible-core releases it was tested with (2.19); otherwise it stays
    off."
  - It changes no output and no result; it only needs enabling (the project's ansible.cfg
    does).
requirements:
  - Enabled in C(callbacks_enabled) (ansible.cfg) or C(ANSIBLE_CALLBACKS_ENABLED).
options:
  template_code_cache:
    description:
      - Keep and share compiled template code for the run (see above). Turn it off to compare
        or to rule it out.
    type: bool
    default: true
    env:
      - name: LOCALLLM_FLEET_TEMPLATE_CODE_CACHE
    ini:
      - section: callback_preload
        key: template_code_cache
"""

from ansible.collections.list import list_collection_dirs
from ansible.plugins.callback import CallbackBase
from ansible.plugins.loader import filter_loader
from ansible.utils.display import Display

from ansible_collections.localllm.fleet.plugins.plugin_utils import template_code

display = Display()

# Any filter of the collection: looking one up makes the loader read every filter file.
_ANY_FILTER = "localllm.fleet.ollama_version"


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "localllm.fleet.preload"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._roles_seen: set[int] = set()

    def v2_playbook_on_start(self, playbook):
        preload()
        if self._template_code_cache_wanted():
            _cache, what = template_code.install()
            display.vvv(f"localllm.fleet.preload: template code cache: {what}")

    def _template_code_cache_wanted(self) -> bool:
        try:
            return bool(self.get_option("template_code_cache"))
        except (KeyError, AttributeError):
            return True  # options not loaded (the callback built by hand): the default

    def _take_in(self) -> None:
        cache = template_code.installed()
        if cache is not None:
            cache.take_in()

    # Before each task's workers are forked (the strategy sends these first), the main process
    # takes in the code the earlier workers compiled, so that the new ones inherit it.
    def v2_playbook_on_play_start(self, play):
        self._take_in()

    def v2_playbook_on_task_start(self, task, is_conditional):
        self._take_in()
        self._precompile(task)

    def v2_playbook_on_handler_task_start(self, task):
        self._take_in()
        self._precompile(task)

    def _precompile(self, task) -> None:
        """Compile the task's own templates and conditions (and, at a role's first task, the
        role's defaults and variables) before its workers are forked: the workers of one task
        start together, so each would compile what none of them has sent yet."""
        if template_code.installed() is None:
            return
        try:
            templates = [*template_code.template_texts(task.args)]
            templates += template_code.template_texts(task.loop)
            templates += template_code.template_texts(task.vars)
            expressions: list[str] = []
            for keyword in (task.when, task.failed_when, task.changed_when, task.until):
                expressions += template_code.conditions(keyword)
            if task.action in ("ansible.builtin.assert", "assert", "ansible.legacy.assert"):
                expressions += template_code.conditions((task.args or {}).get("that", []))
            role = getattr(task, "_role", None)
            if role is not None and id(role) not in self._roles_seen:
                self._roles_seen.add(id(role))
                templates += template_code.template_texts(role.get_default_vars())
                templates += template_code.template_texts(role.get_vars(include_params=False))
            template_code.precompile(templates, expressions)
        except Exception as exc:
            display.vvv(f"localllm.fleet.preload: template code cache: not precompiled ({exc!r})")

    def v2_playbook_on_stats(self, stats):
        cache = template_code.installed()
        if cache is not None:
            cache.take_in()
            display.vvv(
                f"localllm.fleet.preload: template code cache: {len(cache.entries)} compiled"
                " templates kept in the main process"
            )


def preload() -> None:
    """Load the collection's filter files (and their module_utils), and import every installed
    collection's package (listing them imports each), into this process."""
    filter_loader.get(_ANY_FILTER)
    for _ in list_collection_dirs():
        pass
