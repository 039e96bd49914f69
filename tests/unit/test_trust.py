"""Where the toolkit trusts what it downloads: plain HTTP without a pinned checksum is
refused unless the operator says so, and credentials in URLs never reach the output."""

from __future__ import annotations

import pytest

from ansible_collections.localllm.fleet.plugins.module_utils import trust


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("http://user:s3cret@mirror.example/x.gguf", "http://***@mirror.example/x.gguf"),
        ("https://token@mirror.example:8443/a?b=c", "https://***@mirror.example:8443/a?b=c"),
        ("http://mirror.example/x", "http://mirror.example/x"),
        ("HTTP://u:p@[::1]:80/x", "HTTP://***@[::1]:80/x"),
        ("not a url", "not a url"),
        ("", ""),
    ],
)
def test_credentials_in_urls_are_redacted(url, shown):
    assert trust.redact_url(url) == shown


def test_redact_text_removes_every_spelling_of_the_credentials():
    url = "http://fleet:p%40ss@mirror.example/x"
    text = f"cannot download {url}: p%40ss and p@ss refused"
    assert trust.redact_text(text, url) == (
        "cannot download http://***@mirror.example/x: *** and *** refused"
    )
    assert trust.url_secrets(url) == ["fleet:p%40ss", "p%40ss", "p@ss"]


@pytest.mark.parametrize(
    ("url", "plain"),
    [
        ("http://mirror:8080/ollama", True),
        ("HTTP://mirror/x", True),
        (" http://mirror/x", True),
        ("https://mirror/x", False),
        ("/srv/files/x", False),
        ("", False),
    ],
)
def test_plain_http_is_recognised(url, plain):
    assert trust.is_plain_http(url) is plain


def test_only_plain_http_without_a_pin_is_unverified():
    found = trust.unverified_http_sources(
        [
            {
                "what": "ollama_download_base_url",
                "url": "http://u:p@mirror:8080/ollama",
                "pinned": False,
            },
            {"what": "pinned", "url": "http://mirror:8080/x", "pinned": True},
            {"what": "tls", "url": "https://mirror/x", "pinned": False},
            {"what": "empty", "url": "", "pinned": False},
        ]
    )
    assert found == ["ollama_download_base_url (http://***@mirror:8080/ollama)"]


def test_model_sources_name_every_unauthenticated_base():
    plan = [
        {"name": "a:1", "source": "gguf", "gguf_url": "http://m/a.gguf", "gguf_sha256": ""},
        {"name": "b:1", "source": "gguf", "gguf_url": "http://m/b.gguf", "gguf_sha256": "ab" * 32},
        {
            "name": "c:1",
            "source": "gguf",
            "gguf_url": "",
            "gguf_local": "/x.gguf",
            "gguf_sha256": "",
        },
        {"name": "d:1", "source": "registry", "pull": "mirror:8080/library/d:1", "insecure": True},
        {"name": "e:1", "source": "registry", "pull": "e:1", "insecure": False},
        {"name": "f:1", "source": "bundle"},
    ]
    assert trust.unverified_model_sources(plan) == [
        "a:1: GGUF http://m/a.gguf with its checksum read from the same server",
        "d:1: registry mirror:8080/library/d:1 without TLS verification (insecure)",
    ]
