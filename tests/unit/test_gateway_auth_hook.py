"""The LiteLLM custom_auth hook (roles/fleet_gateway/files/fleet_auth.py) with LiteLLM's
interface stood in for: what it answers for no key, a wrong key, an unknown model, a known
one, a revoked key, and how it reshapes the pools' 503. The same file runs against the real
LiteLLM in molecule/shared/serving_checks.py (401/403/404/429 end to end)."""

from __future__ import annotations

import asyncio
import importlib.util
import os
import shutil
import sys
import types
from pathlib import Path

import pytest

from ansible_collections.localllm.fleet.plugins.module_utils import gateway_keys as gk

REPO = Path(__file__).resolve().parents[2]
HOOK = REPO / "roles" / "fleet_gateway" / "files" / "fleet_auth.py"
KEYS_CODE = REPO / "plugins" / "module_utils" / "gateway_keys.py"
KEY_A = "alpha-" + "a" * 32
KEY_B = "bravo-" + "b" * 32
MODELS = ["fleet/gemma3:4b", "gemma3", "fleet/deepseek-r1:32b"]


class ProxyException(Exception):
    """LiteLLM's, as far as the hook relies on it (litellm/proxy/_types.py)."""

    def __init__(self, message, type, param, code=None, *, headers=None, openai_code=None):
        super().__init__(message)
        self.message, self.type, self.param = message, type, param
        self.code = str(code)
        self.headers = headers or {}

    def to_dict(self):
        return {"message": self.message, "type": self.type, "param": self.param, "code": self.code}


class UserAPIKeyAuth:
    def __init__(self, **fields):
        self.fields = fields


class HTTPException(Exception):
    pass


class CustomLogger:
    pass


class Request:
    def __init__(self, method="POST", body=None):
        self.method, self.body = method, body


async def read_body(request):
    if request.body == "broken":
        raise ValueError("not JSON")
    return request.body or {}


@pytest.fixture
def hook(tmp_path, monkeypatch):
    fakes = {
        "fastapi": {"HTTPException": HTTPException},
        "litellm": {},
        "litellm.integrations": {},
        "litellm.integrations.custom_logger": {"CustomLogger": CustomLogger},
        "litellm.proxy": {},
        "litellm.proxy._types": {
            "ProxyException": ProxyException,
            "UserAPIKeyAuth": UserAPIKeyAuth,
        },
        "litellm.proxy.common_utils": {},
        "litellm.proxy.common_utils.http_parsing_utils": {"_read_request_body": read_body},
    }
    for name, attributes in fakes.items():
        module = types.ModuleType(name)
        module.__dict__.update(attributes)
        monkeypatch.setitem(sys.modules, name, module)
    shutil.copy(HOOK, tmp_path / "fleet_auth.py")
    shutil.copy(KEYS_CODE, tmp_path / "fleet_keys.py")
    pepper = gk.new_secret()
    (tmp_path / "keys.pepper").write_text(pepper)
    clients = gk.validate_clients(
        [
            {"name": "all", "key": KEY_A, "models": ["*"], "rpm": 100},
            {"name": "one", "key": KEY_B, "models": ["gemma3"]},
        ],
        MODELS,
        aliases={"gemma3": "fleet/gemma3:4b"},
    )

    def write(entries):
        document = gk.build_document(entries, pepper, "5" * 64, MODELS)
        (tmp_path / "keys.tmp").write_text(gk.render_document(document))
        os.replace(tmp_path / "keys.tmp", tmp_path / "keys.json")

    write(clients)
    monkeypatch.setenv("FLEET_GATEWAY_KEYS_FILE", str(tmp_path / "keys.json"))
    monkeypatch.setenv("FLEET_GATEWAY_PEPPER_FILE", str(tmp_path / "keys.pepper"))
    monkeypatch.delitem(sys.modules, "fleet_keys", raising=False)
    spec = importlib.util.spec_from_file_location(
        "fleet_auth_under_test", tmp_path / "fleet_auth.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.rewrite = write
    module.clients = clients
    return module


def call(hook, key, request=None):
    return asyncio.run(hook.user_api_key_auth(request or Request(body={"model": "gemma3"}), key))


@pytest.mark.parametrize("key", [None, "", "Bearer ", "Bearer " + "x" * 40, KEY_A + "x"])
def test_no_key_or_a_wrong_one_is_401_invalid_api_key(hook, key):
    with pytest.raises(ProxyException) as error:
        call(hook, key)
    assert error.value.code == "401"
    assert error.value.to_dict()["code"] == "invalid_api_key"
    assert error.value.to_dict()["type"] == "invalid_request_error"


def test_a_model_the_gateway_does_not_serve_is_404_model_not_found(hook):
    with pytest.raises(ProxyException) as error:
        call(hook, KEY_B, Request(body={"model": "gpt-4o"}))
    assert error.value.code == "404"
    assert error.value.to_dict() == {
        "message": "The model `gpt-4o` does not exist or you do not have access to it.",
        "type": "invalid_request_error",
        "param": "model",
        "code": "model_not_found",
    }


def test_a_valid_key_becomes_its_client_identity(hook):
    identity = call(hook, f"Bearer {KEY_B}").fields
    assert identity["key_alias"] == identity["key_name"] == "one"
    assert identity["models"] == ["fleet/gemma3:4b", "gemma3"]
    assert identity["rpm_limit"] is None
    assert identity["api_key"] != KEY_B and len(identity["api_key"]) == 64
    everything = call(hook, KEY_A).fields
    assert everything["models"] == []  # LiteLLM's "all models"
    assert everything["rpm_limit"] == 100


def test_requests_without_a_model_or_a_readable_body_are_left_to_litellm(hook):
    assert call(hook, KEY_A, Request("GET")).fields["key_alias"] == "all"
    assert call(hook, KEY_A, Request(body="broken")).fields["key_alias"] == "all"


def test_a_revoked_key_is_refused_at_once_and_the_others_keep_working(hook):
    assert call(hook, KEY_B).fields["key_alias"] == "one"
    hook.rewrite([c for c in hook.clients if c["name"] != "one"])
    with pytest.raises(ProxyException):
        call(hook, KEY_B)
    assert call(hook, KEY_A).fields["key_alias"] == "all"


def test_the_error_shaper_turns_the_pools_503_into_openais_shape(hook):
    wrapped = Exception(
        'litellm.ServiceUnavailableError: Ollama_chatException - {"error":{"message":"No host '
        'serving fleet/gemma3:4b is healthy; try again shortly or use another model.",'
        '"code":"model_unavailable"}}'
    )
    shaped = asyncio.run(hook.error_shaper.async_post_call_failure_hook({}, wrapped, None))
    assert isinstance(shaped, HTTPException) and isinstance(shaped, ProxyException)
    assert shaped.status_code == 503 and shaped.code == "503"
    assert shaped.to_dict() == {
        "message": (
            "No host serving fleet/gemma3:4b is healthy; try again shortly or use another model."
        ),
        "type": "service_unavailable",
        "param": "model",
        "code": "model_unavailable",
    }
    other = Exception("litellm.BadRequestError: does not support thinking")
    assert asyncio.run(hook.error_shaper.async_post_call_failure_hook({}, other, None)) is None
