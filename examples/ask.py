#!/usr/bin/env python3
"""Ask the fleet a question the way an application does: the official `openai` client.

  OPENAI_BASE_URL=https://gateway.example:8443/v1 OPENAI_API_KEY=... \\
  FLEET_CA_FILE=/path/to/fleet-ca.pem  examples/ask.py [--model deepseek-r1] "question"

The gateway speaks OpenAI's API with DeepSeek's `reasoning_content` beside `content`, so an
application written for DeepSeek's hosted API moves to the private fleet by changing its base
URL and key. This streams the answer and prints the model's reasoning apart from it.
Exit status: 0 answered, 1 the gateway refused or failed (its error printed), 2 bad usage.
"""

from __future__ import annotations

import argparse
import os
import sys

import httpx
import openai


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("question")
    parser.add_argument("--model", default="deepseek-r1")
    parser.add_argument("--no-stream", action="store_true", help="one answer, not a stream")
    args = parser.parse_args(argv)
    for name in ("OPENAI_BASE_URL", "OPENAI_API_KEY"):
        if not os.environ.get(name):
            print(f"ask: set {name}", file=sys.stderr)
            return 2
    # The fleet's CA, not the public ones: the endpoint's certificate is the fleet's own.
    verify = os.environ.get("FLEET_CA_FILE") or True
    client = openai.OpenAI(http_client=httpx.Client(verify=verify, timeout=600))
    messages = [{"role": "user", "content": args.question}]
    try:
        if args.no_stream:
            reply = client.chat.completions.create(model=args.model, messages=messages)
            message = reply.choices[0].message
            reasoning = getattr(message, "reasoning_content", None)
            if reasoning:
                print(f"--- reasoning ---\n{reasoning.strip()}\n")
            print(f"--- answer ---\n{(message.content or '').strip()}")
            return 0
        stream = client.chat.completions.create(model=args.model, messages=messages, stream=True)
        section = None
        for chunk in stream:
            if not chunk.choices:
                continue
            delta = chunk.choices[0].delta
            for name, text in (
                ("reasoning", getattr(delta, "reasoning_content", None)),
                ("answer", delta.content),
            ):
                if not text:
                    continue
                if section != name:
                    print(f"{chr(10) if section else ''}--- {name} ---", flush=True)
                    section = name
                print(text, end="", flush=True)
        print()
        return 0
    except openai.APIStatusError as error:
        print(f"ask: the gateway answered {error.status_code}: {error.message}", file=sys.stderr)
        return 1
    except openai.APIConnectionError as error:
        print(f"ask: cannot reach the gateway: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
