"""Deterministic "inference": the same model, prompt and options always give the same text.

A stand-in cannot run a language model, and tests need answers they can predict. Text is drawn
from a fixed vocabulary by a generator seeded with the model digest, the rendered prompt and
the sampling options; reasoning models emit a thinking part first, as real ones do between
<think> tags. Token counting is a simple word/punctuation split.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from dataclasses import dataclass
from typing import Any

_TOKEN_RE = re.compile(r"\w+|[^\w\s]", re.UNICODE)

_WORDS = " ".join(
    (
        "model server cluster node memory cache request token context answer question data",
        "value system process thread network storage latency throughput queue batch layer",
        "weight tensor kernel device driver service config policy tier fleet host inventory",
        "rollout version release mirror registry digest manifest blob template parameter",
        "stream chunk response result error status health check metric report plan step first",
        "second next then also however because therefore simple clear stable fast small large",
        "local private secure careful useful reliable efficient reasonable the a an this that",
        "each every some many few more less most best good better is are was be can will",
        "should could would may might must does do has have run use keep load read write send",
        "check build test verify compare measure and or but so if when while after before",
        "with without for from into over under",
    )
).split()

_THINK_OPENERS = (
    "Okay, the user is asking about",
    "Alright, let me think about",
    "Hmm, the question concerns",
    "Let me work through",
)


def count_tokens(text: str) -> int:
    return len(_TOKEN_RE.findall(text))


def _split_tokens(text: str) -> list[str]:
    """Split into streamable pieces that concatenate back to text."""
    pieces = re.findall(r"\s*\S+", text)
    if text and not pieces:
        return [text]
    trailing = text[len("".join(pieces)) :]
    if trailing and pieces:
        pieces[-1] += trailing
    return pieces


def _sentences(rng: random.Random, count: int) -> str:
    sentences: list[str] = []
    written = 0
    while written < count:
        length = min(rng.randint(6, 14), max(count - written, 3))
        words = [rng.choice(_WORDS) for _ in range(length)]
        words[0] = words[0].capitalize()
        sentences.append(" ".join(words) + ".")
        written += length
    return " ".join(sentences)


@dataclass
class Generation:
    thinking: list[str]
    content: list[str]


def seed_for(model_digest: str, prompt: str, options: dict[str, Any]) -> int:
    relevant = {
        k: options.get(k)
        for k in ("seed", "temperature", "top_k", "top_p", "min_p", "repeat_penalty")
        if options.get(k) is not None
    }
    material = json.dumps([model_digest, prompt, relevant], sort_keys=True, default=str)
    return int.from_bytes(hashlib.sha256(material.encode()).digest()[:8], "big")


def generate(
    model_digest: str,
    prompt: str,
    *,
    last_user: str,
    options: dict[str, Any],
    think: bool,
    json_format: bool,
) -> Generation:
    rng = random.Random(seed_for(model_digest, prompt, options))  # noqa: S311 - not crypto
    thinking: list[str] = []
    if think:
        topic = " ".join(last_user.split()[:8]).strip() or "this"
        opener = rng.choice(_THINK_OPENERS)
        thought = f'{opener} "{topic}". ' + _sentences(rng, rng.randint(18, 36))
        thinking = _split_tokens(thought)
    body = _sentences(rng, rng.randint(12, 40))
    if json_format:
        body = json.dumps({"response": body})
    return Generation(thinking=thinking, content=_split_tokens(body))
