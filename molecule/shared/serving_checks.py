"""What a client of the fleet sees through the gateway, checked with the official `openai`
client: reasoning beside content, /v1/models per key, 401/403/404/429 in OpenAI's error
shape, revocation without a restart while another client streams, no prompt in any log,
failover when a host dies or hangs, 503 (or the fallback) when no host is up.

Reusable: a test module provides one fixture, `serving`, that returns a `Serving` describing
the gateway under test and how to act on the fleet behind it, and imports the tests:

    from serving_checks import *  # noqa: F403 - the shared checks are the module's tests

    @pytest.fixture(scope="session")
    def serving() -> Serving:
        return Serving(
            base_url="https://127.0.0.1:42443/v1",
            ca_file=".lab/tls/ca.pem",
            keys={"all": ..., "limited": ..., "rated": ..., "revocable": ...},
            limited_model="gemma3", rated_rpm=5,
            reasoning_model="deepseek-r1", general_model="gemma3",
            public_names=[...],                      # what /v1/models must list for "all"
            revoke=lambda client: ...,               # e.g. serve.yml --tags keys without it
            processes=lambda: {...},                 # name -> PID of HAProxy, LiteLLM, Ollama
            logs=lambda: "...",                      # the gateway's, HAProxy's and Ollama's logs
            failover=Failover(model=..., hosts=[a, b], stop=..., hang=..., resume=...),
            unavailable=[Unavailable(model=..., stop_all=..., resume_all=..., fallback=None)],
            metrics_url="http://127.0.0.1:8405/metrics",  # rotation seen by HAProxy
            litellm_metrics_url="http://127.0.0.1:8406/metrics",  # requests per client
            fetch=lambda url: "...",  # optional: reads those URLs where they are reachable
        )

Keys by role: "all" may use every model, "limited" only `limited_model`, "rated" is
limited to `rated_rpm` requests per minute, "revocable" is the key the revocation test
removes (the fixture's `revoke` must take it out of the gateway's keys without a restart).
Checks that need time print what they measured (failures over the outage, seconds until
the host left and came back); nothing asserts a latency.
"""

from __future__ import annotations

import concurrent.futures
import socket
import ssl
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx
import openai
import pytest

# A prompt marker: searched for in every log after the run (it must be in none).
MARKER = f"fleet-marker-{uuid.uuid4().hex[:12]}"


@dataclass
class Failover:
    """A model served by two or more hosts, and how to break one of them."""

    model: str
    hosts: list[str]
    stop: Callable[[str], None]  # Ollama stops (connection refused behind the edge)
    hang: Callable[[str], None]  # Ollama stops answering (SIGSTOP)
    resume: Callable[[str], None]  # back to normal
    pool: str = ""  # HAProxy pool name, to read the rotation from metrics_url


@dataclass
class Unavailable:
    """A model whose hosts can all be stopped: the gateway answers 503, or the fallback
    (then `fallback` is the public name expected to answer, from LiteLLM's
    x-litellm-model-group header)."""

    model: str
    stop_all: Callable[[], None]
    resume_all: Callable[[], None]
    fallback: str | None = None  # the model that answers instead, when one is configured


@dataclass
class Serving:
    base_url: str
    ca_file: str
    keys: dict[str, str]
    limited_model: str
    rated_rpm: int
    reasoning_model: str
    general_model: str
    public_names: list[str]
    revoke: Callable[[str], None]
    processes: Callable[[], dict[str, int]]
    logs: Callable[[], str]
    failover: Failover | None = None
    unavailable: list[Unavailable] = field(default_factory=list)
    metrics_url: str | None = None
    litellm_metrics_url: str | None = None
    # Reads a metrics URL and returns (status, body); default: from this machine. Metrics
    # endpoints bound to the gateway's loopback are read on the gateway (e.g. curl there).
    fetch: Callable[[str], tuple[int, str]] | None = None
    long_stream_tokens: int = 400
    timeout: float = 300.0
    extra: dict = field(default_factory=dict)

    def read(self, url: str) -> tuple[int, str]:
        if self.fetch is not None:
            return self.fetch(url)
        with httpx.Client(timeout=30) as http:
            response = http.get(url)
        return response.status_code, response.text

    def tls(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=self.ca_file)

    def client(self, role: str | None = "all", key: str | None = None) -> openai.OpenAI:
        api_key = key if key is not None else self.keys[role or "all"]
        return openai.OpenAI(
            base_url=self.base_url,
            api_key=api_key,
            http_client=httpx.Client(verify=self.tls(), timeout=self.timeout),
            max_retries=0,
        )


def _split(stream) -> tuple[str, str, list[str]]:
    """(reasoning, content, order of the kinds of chunks) of a streamed chat."""
    reasoning, content, order = [], [], []
    for chunk in stream:
        if not chunk.choices:
            continue
        delta = chunk.choices[0].delta
        text = getattr(delta, "reasoning_content", None)
        if text:
            reasoning.append(text)
            order.append("reasoning")
        if delta.content:
            content.append(delta.content)
            order.append("content")
    return "".join(reasoning), "".join(content), order


def _chat(serving: Serving, model: str, role: str = "all", **kwargs):
    return serving.client(role).chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": f"{MARKER} Why is the sky blue?"}],
        **kwargs,
    )


# ------------------------------------------------------------------------------ answers


def test_a_reasoning_model_answers_with_reasoning_content_beside_content(serving):
    message = _chat(serving, serving.reasoning_model, max_tokens=96).choices[0].message
    reasoning = getattr(message, "reasoning_content", None)
    assert reasoning and message.content, message
    assert reasoning.strip() != message.content.strip()
    assert reasoning not in message.content


def test_a_reasoning_model_streams_its_reasoning_first_then_the_answer(serving):
    stream = _chat(serving, serving.reasoning_model, max_tokens=96, stream=True)
    reasoning, content, order = _split(stream)
    assert reasoning and content
    assert reasoning not in content
    first_content = order.index("content")
    assert "reasoning" not in order[first_content:], "reasoning chunks after the answer began"


def test_a_general_model_answers_without_reasoning(serving):
    message = _chat(serving, serving.general_model, max_tokens=48).choices[0].message
    assert message.content
    assert not getattr(message, "reasoning_content", None)
    reasoning, content, _ = _split(
        _chat(serving, serving.general_model, max_tokens=48, stream=True)
    )
    assert content and not reasoning


def test_think_false_gives_the_answer_only(serving):
    message = _chat(serving, serving.reasoning_model, max_tokens=48, extra_body={"think": False})
    assert message.choices[0].message.content
    assert not getattr(message.choices[0].message, "reasoning_content", None)


def test_reasoning_effort_is_passed_through(serving):
    message = _chat(serving, serving.reasoning_model, max_tokens=64, reasoning_effort="high")
    assert getattr(message.choices[0].message, "reasoning_content", None)
    with pytest.raises(openai.BadRequestError, match="does not support thinking"):
        _chat(serving, serving.general_model, max_tokens=16, reasoning_effort="high")


# ------------------------------------------------------------------------------ keys


def test_the_model_list_is_exactly_the_fleets_public_names(serving):
    listed = sorted(model.id for model in serving.client("all").models.list())
    assert listed == sorted(serving.public_names)


def test_a_limited_key_sees_and_uses_only_its_models(serving):
    listed = {model.id for model in serving.client("limited").models.list()}
    assert serving.limited_model in listed
    assert listed < set(serving.public_names)
    other = next(name for name in serving.public_names if name not in listed)
    with pytest.raises(openai.PermissionDeniedError) as error:
        _chat(serving, other, role="limited", max_tokens=8)
    assert error.value.status_code == 403
    assert _chat(serving, serving.limited_model, role="limited", max_tokens=8).choices


def test_a_request_without_a_key_is_401_in_openais_shape(serving):
    # The official client refuses to send nothing; applications with a missing setting do.
    with httpx.Client(verify=serving.tls(), timeout=60) as http:
        for path, body in (("/models", None), ("/chat/completions", {"model": "x"})):
            response = http.request("POST" if body else "GET", serving.base_url + path, json=body)
            assert response.status_code == 401, (path, response.text)
            assert response.json()["error"]["code"] == "invalid_api_key"


@pytest.mark.parametrize("key", ["sk-" + "0" * 48, "wrong key with spaces", "x"])
def test_a_wrong_key_is_401_in_openais_shape(serving, key):
    with pytest.raises(openai.AuthenticationError) as error:
        serving.client(None, key=key).models.list()
    assert error.value.status_code == 401
    assert error.value.code == "invalid_api_key"
    with pytest.raises(openai.AuthenticationError):
        serving.client(None, key=key).chat.completions.create(
            model=serving.general_model, messages=[{"role": "user", "content": "hi"}], max_tokens=4
        )


def test_an_unknown_model_is_404_model_not_found(serving):
    with pytest.raises(openai.NotFoundError) as error:
        _chat(serving, "no-such-model:1b", max_tokens=8)
    assert error.value.status_code == 404
    assert error.value.code == "model_not_found"


def test_over_its_rate_a_key_gets_429(serving):
    client = serving.client("rated")
    statuses = []
    for _ in range(serving.rated_rpm + 2):
        try:
            client.chat.completions.create(
                model=serving.limited_model,
                messages=[{"role": "user", "content": "hi"}],
                max_tokens=4,
            )
            statuses.append(200)
        except openai.RateLimitError as error:
            statuses.append(error.status_code)
    print(f"statuses for {serving.rated_rpm + 2} requests at {serving.rated_rpm} rpm: {statuses}")
    assert statuses.count(429) >= 1
    assert statuses[0] == 200


def test_only_the_api_paths_are_served(serving):
    origin = serving.base_url.rsplit("/v1", 1)[0]
    with httpx.Client(verify=serving.tls(), timeout=30) as http:
        for path in ("/key/generate", "/ui/", "/metrics", "/health/readiness", "/config/yaml"):
            response = http.get(
                origin + path, headers={"Authorization": f"Bearer {serving.keys['all']}"}
            )
            assert response.status_code == 404, (path, response.status_code)
            assert response.json()["error"]["code"] == "unknown_url"


def test_the_endpoint_refuses_tls_before_1_2(serving):
    origin = httpx.URL(serving.base_url)
    context = ssl.create_default_context(cafile=serving.ca_file)
    context.check_hostname = False
    context.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
    context.maximum_version = ssl.TLSVersion.TLSv1_1
    with (
        pytest.raises((ssl.SSLError, OSError)),
        socket.create_connection((origin.host, origin.port), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname=origin.host),
    ):
        pass


def test_revoking_a_key_needs_no_restart_and_leaves_other_streams_flowing(serving):
    revocable = serving.client("revocable")
    assert revocable.models.list().data
    before = serving.processes()
    chunks: list[str] = []
    errors: list[BaseException] = []
    first = threading.Event()

    def stream() -> None:
        try:
            response = _chat(
                serving, serving.reasoning_model, max_tokens=serving.long_stream_tokens, stream=True
            )
            for chunk in response:
                if chunk.choices and (
                    chunk.choices[0].delta.content
                    or getattr(chunk.choices[0].delta, "reasoning_content", None)
                ):
                    chunks.append("x")
                    first.set()
        except BaseException as error:  # reported by the assertion below
            errors.append(error)
            first.set()

    worker = threading.Thread(target=stream)
    worker.start()
    assert first.wait(120), "the long stream never started"
    started = time.monotonic()
    serving.revoke("revocable")
    refused_after = None
    while time.monotonic() - started < 60:
        try:
            revocable.models.list()
        except openai.AuthenticationError:
            refused_after = time.monotonic() - started
            break
        time.sleep(0.5)
    during = len(chunks)
    worker.join(serving.timeout)
    print(
        f"revoked key refused {refused_after:.1f} s after the revocation began; the other "
        f"client's stream had {during} chunks then, {len(chunks)} at its end"
        if refused_after is not None
        else "the revoked key was never refused"
    )
    assert refused_after is not None
    assert not errors, errors
    assert len(chunks) > during, "the other stream did not keep flowing after the revocation"
    assert serving.processes() == before, "a gateway process was restarted"
    assert serving.client("all").models.list().data


def test_no_prompt_text_and_no_key_in_any_log(serving):
    _chat(serving, serving.general_model, max_tokens=16)
    _split(_chat(serving, serving.reasoning_model, max_tokens=16, stream=True))
    with pytest.raises(openai.NotFoundError):  # a refused request is logged too
        _chat(serving, "no-such-model:1b", role="limited", max_tokens=4)
    text = serving.logs()
    assert text, "no log text to search: the fixture's logs() returned nothing"
    assert MARKER not in text
    assert not [role for role, key in serving.keys.items() if key in text]


def test_litellm_metrics_count_requests_per_client(serving):
    assert serving.litellm_metrics_url, "needs the gateway's LiteLLM metrics URL"
    _chat(serving, serving.general_model, max_tokens=4)
    status, text = serving.read(serving.litellm_metrics_url)
    assert status == 200, text[:300]
    lines = [line for line in text.splitlines() if line.startswith("litellm_")]
    assert lines, "no LiteLLM metric"
    assert any('api_key_alias="' in line for line in lines), "no metric names the client"
    assert not any(key in text for key in serving.keys.values())


# ------------------------------------------------------------------------------ faults


def _rotation(serving: Serving, pool: str) -> dict[str, int]:
    """HAProxy's view of one pool: server -> 1 (up) / 0, from its Prometheus exporter."""
    if not serving.metrics_url:
        return {}
    _status, text = serving.read(serving.metrics_url)
    state = {}
    for line in text.splitlines():
        wanted = line.startswith("haproxy_server_status{") and f'proxy="{pool}"' in line
        if wanted and 'state="UP"' in line:
            server = line.split('server="', 1)[1].split('"', 1)[0]
            state[server] = int(float(line.rsplit(" ", 1)[1]))
    return state


def _traffic(
    serving: Serving, model: str, seconds: float, fault: Callable[[], None], at: float, *, count=200
) -> list[tuple[float, bool, str]]:
    """`count` requests started at even intervals over `seconds` (each in its own thread, so a
    slow answer does not delay the next), the fault applied `at` seconds in:
    [(start offset, ok, error)], sorted by start."""
    client = serving.client("all")
    started = time.monotonic()

    def one(offset: float) -> tuple[float, bool, str]:
        time.sleep(max(0.0, offset - (time.monotonic() - started)))
        try:
            client.chat.completions.create(
                model=model, messages=[{"role": "user", "content": "hi"}], max_tokens=4, timeout=120
            )
            return (offset, True, "")
        except openai.APIError as error:
            return (offset, False, f"{type(error).__name__}: {str(error)[:100]}")

    with concurrent.futures.ThreadPoolExecutor(max_workers=32) as pool:
        futures = [pool.submit(one, index * seconds / count) for index in range(count)]
        time.sleep(max(0.0, at - (time.monotonic() - started)))
        fault()
        results = [future.result() for future in futures]
    return sorted(results)


@pytest.mark.parametrize("kind", ["stop", "hang"])
def test_a_dead_or_hung_host_leaves_rotation_and_returns(serving, kind):
    failover = serving.failover
    assert failover is not None and len(failover.hosts) >= 2, "needs a model on two hosts"
    victim = failover.hosts[0]
    fault_at = 3.0
    try:
        results = _traffic(
            serving, failover.model, 20.0, lambda: getattr(failover, kind)(victim), fault_at
        )
    finally:
        failover.resume(victim)
    failures = [r for r in results if not r[1]]
    late = [r for r in failures if r[0] >= fault_at + 10]
    print(
        f"{kind} {victim} at {fault_at:.0f} s: {len(results)} requests over 20 s, "
        f"{len(failures)} failed ({', '.join(f'{r[0]:.1f}s {r[2]}' for r in failures[:5])})"
    )
    assert not late, f"requests still failed more than 10 s after the fault: {late[:3]}"
    if failover.pool and serving.metrics_url:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and _rotation(serving, failover.pool).get(victim) != 1:
            time.sleep(1)
        assert _rotation(serving, failover.pool).get(victim) == 1, f"{victim} did not come back"
        print(f"{victim} back in rotation")
    assert _chat(serving, failover.model, max_tokens=4).choices


def _outcome(serving: Serving, model: str) -> tuple:
    try:
        raw = serving.client("all").chat.completions.with_raw_response.create(
            model=model, messages=[{"role": "user", "content": "hi"}], max_tokens=4
        )
        raw.parse()
        return ("answered", raw.headers.get("x-litellm-model-group"))
    except openai.APIStatusError as error:
        return (error.status_code, error.code, error.message)


def test_with_no_host_up_the_answer_is_503_or_the_fallback(serving):
    assert serving.unavailable, "needs a model whose hosts can all be stopped"
    for unavailable in serving.unavailable:
        unavailable.stop_all()
        try:
            deadline = time.monotonic() + 30
            outcome = _outcome(serving, unavailable.model)
            expected = ("answered", unavailable.fallback) if unavailable.fallback else (503,)
            while outcome[: len(expected)] != expected and time.monotonic() < deadline:
                time.sleep(1)
                outcome = _outcome(serving, unavailable.model)
            print(f"{unavailable.model} with no host up: {outcome}")
            if unavailable.fallback:
                assert outcome == ("answered", unavailable.fallback)
            else:
                assert outcome[0] == 503, outcome
                assert outcome[1] == "model_unavailable"
                assert "is healthy" in outcome[2]
        finally:
            unavailable.resume_all()
