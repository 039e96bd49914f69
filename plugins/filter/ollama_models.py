"""Filters for the ollama_models role (plugins/module_utils/models_plan.py).

{{ ollama_models | localllm.fleet.ollama_models_plan(extras, overrides, defaults) }}
{{ installed | localllm.fleet.ollama_models_prune(plan, keep) }}
{{ response.content | localllm.fleet.ollama_chat_summary }}
{{ plan | localllm.fleet.ollama_smoke_results(show, live, reasoning, ps, ...) }}
{{ show.results | localllm.fleet.ollama_thinking_models }}
{{ num_ctx | localllm.fleet.ollama_reasoning_budget(2048) }}
{{ journal.stdout | localllm.fleet.ollama_startup_devices }}
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
            "ollama_smoke_results": as_filter(models_plan.smoke_results, models_plan.PlanError),
            "ollama_thinking_models": as_filter(models_plan.thinking_models, models_plan.PlanError),
            "ollama_reasoning_budget": as_filter(
                models_plan.reasoning_budget, models_plan.PlanError
            ),
            "ollama_model_placement": as_filter(models_plan.model_placement, models_plan.PlanError),
            "ollama_startup_devices": as_filter(models_plan.startup_devices, models_plan.PlanError),
        }
