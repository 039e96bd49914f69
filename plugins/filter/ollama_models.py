"""Filters for the ollama_models role (plugins/module_utils/models_plan.py).

{{ ollama_models | localllm.fleet.ollama_models_plan(extras, overrides, defaults) }}
{{ installed | localllm.fleet.ollama_models_prune(plan, keep) }}
{{ response.content | localllm.fleet.ollama_chat_summary }}
"""

from __future__ import annotations

from ansible_collections.localllm.fleet.plugins.module_utils import models_plan
from ansible_collections.localllm.fleet.plugins.plugin_utils.filter_errors import as_filter


class FilterModule:
    """Model planning filters."""

    def filters(self):
        return {
            "ollama_models_plan": as_filter(models_plan.plan_models, models_plan.PlanError),
            "ollama_models_prune": as_filter(models_plan.prune_candidates, models_plan.PlanError),
            "ollama_chat_summary": as_filter(models_plan.chat_summary, models_plan.PlanError),
        }
