"""The contract between gpu_tier and the ollama_models role: every model of the catalog, as
gpu_tier decides it for a host and hands it over (the host's `ollama_models` variable), is
planned by the role without error and its Modelfile renders from the real template of its
family and passes Ollama's parser.

`family` means one thing on both sides, the Modelfile template family (model_families):
before, gpu_tier set it to the name's prefix, and a host pinned to llama3.3:70b (an
alternative of the large tier) failed in the role with "family 'llama3.3' has no Modelfile
template".
"""

from __future__ import annotations

import json

import pytest
from modelfile_testing import render_modelfile

from ansible_collections.localllm.fleet.plugins.module_utils import models_plan as mp
from ansible_collections.localllm.fleet.plugins.module_utils import tier_policy as tp
from ansible_collections.localllm.fleet.plugins.module_utils.model_families import (
    TEMPLATE_FAMILIES,
)
from ansible_collections.localllm.fleet.plugins.module_utils.modelfile import (
    create_request,
    parse,
    template_capabilities,
)

pytestmark = pytest.mark.controller  # the templates render with Ansible's filters

#: An HGX H100 board: room for every model of the catalog, the 671b included.
HGX = [tp.GpuSlot(f"GPU {index}", 81559) for index in range(8)]
DEFAULTS = {"namespace": "fleet", "gguf_base_url": "http://mirror:8080/models"}


def inventory_models(name: str) -> list[dict]:
    """The `ollama_models` gpu_tier sets for a host pinned to `name` (gpu_tier_models), as
    the inventory carries it: plain data."""
    decision = tp.decide(tp.DEFAULT_POLICY, HGX, tp.Overrides(models=(name,)))
    plan = tp.HostPlan(tp.STATUS_GPU, decision.reason, decision)
    return json.loads(json.dumps(plan.to_vars()["ollama_models"]))


@pytest.mark.parametrize("source", ["registry", "gguf"])
@pytest.mark.parametrize("name", sorted(tp.DEFAULT_CATALOG))
def test_every_catalog_model_goes_from_the_decision_to_a_registered_modelfile(name, source):
    declared = inventory_models(name)
    assert [entry["name"] for entry in declared] == [name]
    assert declared[0]["family"] in TEMPLATE_FAMILIES

    entry = mp.plan_models(declared, defaults={**DEFAULTS, "source": source})[0]
    text = render_modelfile(entry)
    request, _ = create_request(parse(text), model=entry["target"], base_dir="/nonexistent")

    assert entry["target"] == f"fleet/{name}"
    assert f"PARAMETER num_ctx {declared[0]['num_ctx']}\n" in text
    if source == "registry":
        assert request["from"] == name
    elif declared[0]["family"] == "generic":
        assert "template" not in request  # no family template: the file's own, if any
    else:
        # a GGUF file brings no template: the family's is used, and says whether it thinks
        capabilities = template_capabilities(request["template"])
        assert ("thinking" in capabilities) == TEMPLATE_FAMILIES[declared[0]["family"]].reasoning


def test_the_large_tiers_alternative_is_registered_with_the_generic_template():
    declared = inventory_models("llama3.3:70b")
    assert declared[0]["family"] == "generic"
    assert mp.plan_models(declared, defaults=DEFAULTS)[0]["modelfile"] == (
        "fleet_llama3.3_70b.Modelfile"
    )


def test_a_catalog_entry_names_a_template_family_or_is_refused():
    added = tp.policy_from_config(
        {
            "catalog": {
                "acme/qwq-tuned:32b": {
                    "size_gb": 20,
                    "layers": 64,
                    "kv_heads": 8,
                    "head_dim": 128,
                    "context_max": 40960,
                }
            }
        }
    )
    assert added.model("acme/qwq-tuned:32b").family == "qwq"
    with pytest.raises(tp.PolicyError, match=r"'llama3\.3' has no Modelfile template; one of"):
        tp.policy_from_config({"catalog": {"llama3.3:70b": {"family": "llama3.3"}}})
