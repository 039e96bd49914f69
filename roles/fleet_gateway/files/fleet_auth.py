# Copyright (c) localllm.fleet contributors
# Apache License 2.0 (see galaxy.yml)
# Installed by the localllm.fleet fleet_gateway role; changes here are overwritten.
"""LiteLLM custom_auth hook: per-client API keys from a file of salted, peppered hashes.

LiteLLM loads this file from beside its config (`general_settings.custom_auth:
fleet_auth.user_api_key_auth`) and awaits the function for every request that needs a key.
The logic lives in fleet_keys.py beside it (the collection's module_utils/gateway_keys.py,
importable without LiteLLM): this file only speaks LiteLLM's interface.

- no key, or a key no client has: 401 `invalid_api_key`;
- a model name the gateway does not serve: 404 `model_not_found` (as OpenAI answers);
- otherwise the client's identity: its name (metrics and logs say which client), its models
  (LiteLLM answers 403 for any other and lists only these in /v1/models) and its requests
  per minute (LiteLLM answers 429 above it).
`error_shaper` (a LiteLLM callback) turns the pools' "no healthy host" answer, which LiteLLM
wraps in its own exception text, back into a plain OpenAI-shaped 503.
The keys file is re-read when it changes on disk: adding or revoking a client needs no
restart. Keys are never logged; errors carry no key.
"""

from __future__ import annotations

import importlib.util
import os
import sys

from fastapi import HTTPException
from litellm.integrations.custom_logger import CustomLogger
from litellm.proxy._types import ProxyException, UserAPIKeyAuth
from litellm.proxy.common_utils.http_parsing_utils import _read_request_body


def _load_fleet_keys():
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fleet_keys.py")
    spec = importlib.util.spec_from_file_location("fleet_keys", path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules["fleet_keys"] = module
    spec.loader.exec_module(module)
    return module


fleet_keys = _load_fleet_keys()
STORE = fleet_keys.KeyStore(
    os.environ.get("FLEET_GATEWAY_KEYS_FILE", "/etc/litellm/keys.json"),
    os.environ.get("FLEET_GATEWAY_PEPPER_FILE", "/etc/litellm/keys.pepper"),
)


class OpenAIError(ProxyException):
    """A ProxyException whose body carries OpenAI's string `code` (LiteLLM's own puts the
    HTTP status there); the HTTP status stays `status`."""

    def __init__(self, status: int, message: str, code: str, param: str | None = None) -> None:
        super().__init__(message=message, type="invalid_request_error", param=param, code=status)
        self.error_code = code

    def to_dict(self) -> dict:
        body = super().to_dict()
        body["code"] = self.error_code
        return body


async def _requested_model(request) -> object:
    if request.method != "POST":
        return None
    try:
        body = await _read_request_body(request=request)
    except Exception:  # a malformed body is LiteLLM's to refuse (400), not the hook's
        return None
    return body.get("model") if isinstance(body, dict) else None


async def user_api_key_auth(request, api_key: str) -> UserAPIKeyAuth:
    client = STORE.lookup(fleet_keys.bearer(api_key))
    if client is None:
        if STORE.error:
            # Said without the key; the file's path and problem help the operator.
            print(f"fleet_auth: no keys loaded: {STORE.error}", file=sys.stderr, flush=True)
        raise OpenAIError(
            401,
            "Incorrect or missing API key. Ask the fleet's operators for a key and send it "
            "as 'Authorization: Bearer <key>'.",
            "invalid_api_key",
        )
    model = await _requested_model(request)
    if fleet_keys.model_state(STORE, model) == "unknown":
        raise OpenAIError(
            404,
            f"The model `{str(model)[:200]}` does not exist or you do not have access to it.",
            "model_not_found",
            param="model",
        )
    models = client["models"]
    return UserAPIKeyAuth(
        api_key=client["hash"],
        key_alias=client["name"],
        key_name=client["name"],
        models=[] if models == [fleet_keys.ALL_MODELS] else list(models),
        rpm_limit=client.get("rpm"),
    )


class _Unavailable(OpenAIError, HTTPException):
    """LiteLLM lets a failure callback replace the client's error only with an HTTPException,
    and raises a ProxyException as it is: this is both, so the body is exactly ours."""

    def __init__(self, message: str) -> None:
        OpenAIError.__init__(self, 503, message, fleet_keys.UNAVAILABLE_CODE, param="model")
        self.type = "service_unavailable"
        self.status_code = 503
        self.detail = message


class ErrorShaper(CustomLogger):
    async def async_post_call_failure_hook(
        self, request_data, original_exception, user_api_key_dict, traceback_str=None
    ):
        message = fleet_keys.unavailable_message(str(original_exception))
        return _Unavailable(message) if message else None


error_shaper = ErrorShaper()
