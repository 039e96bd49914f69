"""The family Modelfile templates (templates/modelfiles): what they register, and that a
`fleet/` model never has fewer capabilities than its base, as Ollama derives them.

Rendered as the ollama_models role renders them (the template lookup's Jinja settings and the
collection's modelfile_line filter); the capabilities are asked from the Ollama stand-in,
which derives them from the template as Ollama v0.32.15 does (server/images.go).
"""

from __future__ import annotations

import importlib.util
import json
import sys
from importlib.machinery import SourceFileLoader
from pathlib import Path

import pytest
from modelfile_testing import render_modelfile

from ansible_collections.localllm.fleet.plugins.module_utils import model_families, models_plan
from ansible_collections.localllm.fleet.plugins.module_utils.modelfile import (
    create_request,
    parse,
    template_capabilities,
)

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "standins" / "ollama"))
sys.path.insert(0, str(ROOT / "tests" / "standins" / "ollama" / "src"))

from ollama_standin import gotemplate
from standin_testing import Ollama

pytest_plugins = ["standin_fixtures"]

#: The lab's library models (make-models): each family's base template, as the registry has it.
_MAKE_MODELS = str(ROOT / "tests" / "standins" / "ollama" / "make-models")
_LOADER = SourceFileLoader("make_models", _MAKE_MODELS)
_SPEC = importlib.util.spec_from_file_location("make_models", _MAKE_MODELS, loader=_LOADER)
LIBRARY = importlib.util.module_from_spec(_SPEC)
sys.modules["make_models"] = LIBRARY  # its dataclasses look their module up
_LOADER.exec_module(LIBRARY)
BASES = {
    "deepseek-r1": ("deepseek-r1:32b", LIBRARY.FAMILIES["deepseek-r1"][0]),
    "qwq": ("qwq:32b", LIBRARY.FAMILIES["qwq"][0]),
    "gemma3": ("gemma3:27b", LIBRARY.FAMILIES["gemma3"][0]),
    "generic": ("llama3.3:70b", LIBRARY.FAMILIES["llama3.3"][0]),
}
FAMILIES = sorted(BASES)


def render(family: str, source: str, **entry) -> str:
    name = BASES[family][0]
    plan = models_plan.plan_models(
        [{"name": name, "family": family, "num_ctx": 8192, **entry}],
        defaults={
            "namespace": "fleet",
            "source": source,
            "gguf_base_url": "http://mirror:8080/models",
        },
    )[0]
    return render_modelfile(plan)


def template_of(text: str) -> str | None:
    request, _ = create_request(parse(text), model="fleet/x", base_dir="/nonexistent")
    return request.get("template")


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("source", ["registry", "bundle"])
def test_a_base_model_keeps_its_own_template(family, source):
    text = render(family, source)
    assert "TEMPLATE" not in text
    assert "num_ctx 8192" in text


@pytest.mark.parametrize("family", model_families.FAMILIES)
def test_a_gguf_file_gets_the_familys_template_and_it_offers_tools(family):
    template = template_of(render(family, "gguf"))
    assert template, "a GGUF file brings no template of its own"
    capabilities = template_capabilities(template)
    assert "tools" in capabilities
    assert ("thinking" in capabilities) == model_families.TEMPLATE_FAMILIES[family].reasoning


def test_the_operators_template_wins():
    text = render("qwq", "registry", template="{{ .Prompt }}")
    assert template_of(text) == "{{ .Prompt }}"


def standin_capabilities(template: str) -> list[str]:
    tmpl = gotemplate.parse(template)
    found = ["tools"] if "tools" in tmpl.vars() else []
    found += ["insert"] if "suffix" in tmpl.vars() else []
    opening, closing = tmpl.infer_thinking_tags()
    return found + (["thinking"] if opening and closing else [])


@pytest.mark.parametrize("family", FAMILIES)
def test_the_product_reads_templates_as_the_stand_in_does(family):
    for template in (BASES[family][1], template_of(render(family, "gguf"))):
        if template:
            assert template_capabilities(template) == standin_capabilities(template)


@pytest.mark.parametrize("family", FAMILIES)
def test_a_fleet_model_has_every_capability_of_its_base(server: Ollama, tiny_gguf, family):
    name, base_template = BASES[family]
    work = tiny_gguf.parent

    def create(model: str, modelfile: str) -> list[str]:
        path = work / f"{model.replace('/', '_').replace(':', '_')}.Modelfile"
        path.write_text(modelfile)
        result = server.run("create", model, "-f", str(path))
        assert result.code == 0, result.stderr
        status, shown = server.post("/api/show", {"model": model})
        assert status == 200
        return shown["capabilities"]

    # a base from the registry (its library template) and the fleet model made FROM it
    base = create(name, f'FROM ./{tiny_gguf.name}\nTEMPLATE """{base_template}"""\n')
    fleet = create(f"fleet/{name}", render(family, "registry"))
    assert set(base) <= set(fleet), (base, fleet)
    # a GGUF file (no template) and the fleet model that imports it with the family's
    plain = create(f"plain-{family}", f"FROM ./{tiny_gguf.name}\n")
    imported = render(family, "gguf").replace(
        f"FROM /var/cache/localllm-fleet/models/{name.replace(':', '-')}-q4_k_m.gguf",
        f"FROM ./{tiny_gguf.name}",
    )
    assert f"FROM ./{tiny_gguf.name}" in imported
    gguf = create(f"fleet/{family}-gguf:1", imported)
    assert set(plain) <= set(gguf), (plain, gguf)
    assert json.dumps(gguf)  # shown as a list of names
