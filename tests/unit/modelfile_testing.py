"""Render the collection's Modelfile templates (templates/modelfiles) as the ollama_models
role does: the template lookup's Jinja settings (trim_blocks, no autoescaping: a Modelfile is
not HTML), Ansible's core filters and the collection's modelfile filters."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jinja2
from ansible.plugins.filter.core import FilterModule as CoreFilters

from ansible_collections.localllm.fleet.plugins.filter.modelfile import FilterModule

TEMPLATES = Path(__file__).resolve().parents[2] / "templates" / "modelfiles"


def render_modelfile(entry: dict[str, Any]) -> str:
    """The Modelfile of one models_plan entry, from its family's template."""
    environment = jinja2.Environment(  # noqa: S701 - see the module docstring
        loader=jinja2.FileSystemLoader(str(TEMPLATES)),
        trim_blocks=True,
        undefined=jinja2.StrictUndefined,
    )
    environment.filters.update(CoreFilters().filters())
    environment.filters.update(
        {f"localllm.fleet.{k}": v for k, v in FilterModule().filters().items()}
    )
    return environment.get_template(f"{entry['family']}.Modelfile.j2").render(
        model=entry, ansible_managed="Managed by localllm.fleet"
    )
