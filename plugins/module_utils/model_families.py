# Copyright (c) localllm.fleet contributors
# Apache License 2.0 (see galaxy.yml)
"""The Modelfile template families: the one meaning of `family` in the collection.

A model's family names the template under templates/modelfiles/ that registers it
(`<family>.Modelfile.j2`): the family's sampling defaults, and for a GGUF file, which brings
no template of its own, its chat template. It is derived from the model name (the longest
family the name starts with; `generic` for every other model) and may be set per model.
gpu_tier's `ollama_models` entries carry it, the ollama_models role renders by it.

`reasoning` says whether the family's models think (DeepSeek-R1, QwQ: their templates hand
the model a <think> turn and Ollama reports the `thinking` capability for them).

Pure standard library; runs on the controller (gpu_tier, the role's filters) and on hosts.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["FAMILIES", "GENERIC", "TEMPLATE_FAMILIES", "TemplateFamily", "family_of"]


@dataclass(frozen=True)
class TemplateFamily:
    name: str
    reasoning: bool


#: Every family with a template, `generic` last (the fallback).
TEMPLATE_FAMILIES: dict[str, TemplateFamily] = {
    family.name: family
    for family in (
        TemplateFamily("deepseek-r1", reasoning=True),
        TemplateFamily("qwq", reasoning=True),
        TemplateFamily("gemma3", reasoning=False),
        TemplateFamily("generic", reasoning=False),
    )
}
GENERIC = "generic"
#: The families a model name can select (every one but the fallback).
FAMILIES: tuple[str, ...] = tuple(name for name in TEMPLATE_FAMILIES if name != GENERIC)


def family_of(model: str) -> str:
    """The template family of a model name (`deepseek-r1:32b`, `deepseek-r1`, or a
    namespaced `acme/qwq-tuned:1`): the longest family the name (without a namespace)
    starts with, followed by its end, `-` or `:`; `generic` otherwise (`llama3.3:70b`)."""
    name = str(model).rsplit("/", 1)[-1]
    for family in sorted(FAMILIES, key=len, reverse=True):
        if name == family or name.startswith((family + "-", family + ":")):
            return family
    return GENERIC
