"""Filters for the ollama_models role (plugins/module_utils/models_plan.py).

{{ ollama_models | localllm.fleet.ollama_models_plan(extras, overrides, defaults) }}
{{ installed | localllm.fleet.ollama_models_prune(plan, keep) }}
{{ response.content | localllm.fleet.ollama_chat_summary }}
"""

from __future__ import annotations

from ansible.errors import AnsibleFilterError

from ansible_collections.localllm.fleet.plugins.module_utils import models_plan


def _wrap(function):
    def filter_function(*args, **kwargs):
        try:
            return function(*args, **kwargs)
        except models_plan.PlanError as exc:
            raise AnsibleFilterError(str(exc)) from exc

    filter_function.__name__ = function.__name__
    filter_function.__doc__ = function.__doc__
    return filter_function


class FilterModule:
    """Model planning filters."""

    def filters(self):
        return {
            "ollama_models_plan": _wrap(models_plan.plan_models),
            "ollama_models_prune": _wrap(models_plan.prune_candidates),
            "ollama_chat_summary": _wrap(models_plan.chat_summary),
        }
