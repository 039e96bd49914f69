# Copyright (c) localllm.fleet contributors
# Apache License 2.0 (see galaxy.yml)
"""What a TEMPLATE tells Ollama a model can do (tools, insert, thinking).

Pure standard library, Python 3.9+.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

# ------------------------------------------------------------------------------ capabilities
#
# What a TEMPLATE tells Ollama a model can do (server/images.go goTemplateCapabilities at
# v0.32.15): "tools" when it refers to .Tools, "insert" when it refers to .Suffix, and
# "thinking" when thinking.InferTags finds text around {{ .Thinking }} inside a range over
# .Messages. Enough of Go's text/template is parsed to answer those three questions; the
# template is never executed.

#: Capabilities a Go TEMPLATE can add to a model (the others come from the weights).
TEMPLATE_CAPABILITIES = ("tools", "insert", "thinking")

_ACTION = re.compile(r"\{\{(-\s)?(.*?)(\s-)?\}\}", re.DOTALL)
_QUOTED = re.compile(r'"(?:[^"\\]|\\.)*"|`[^`]*`|\'(?:[^\'\\]|\\.)*\'')
_IDENTS = re.compile(
    r"(\$\w*)((?:\.[A-Za-z_]\w*)*)|(?<![\w)\]])\.([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*)"
)
_BRANCHES = ("if", "range", "with", "block", "define")


@dataclass
class _Node:
    kind: str  # list, text, action, if, range, with, block, define, template
    text: str = ""  # the text, or the pipeline
    nodes: list[_Node] = field(default_factory=list)  # a list's nodes, a branch's body
    other: _Node | None = None  # a branch's {{else}} list


def _identifiers(pipe: str) -> tuple[list[list[str]], list[list[str]]]:
    """(field chains, variable chains) of a pipeline: `.A.B` -> ['A', 'B'], `$.T` -> ['$', 'T']."""
    fields, variables = [], []
    for match in _IDENTS.finditer(_QUOTED.sub('""', pipe)):
        if match.group(3):
            fields.append(match.group(3).split("."))
        else:
            variables.append([match.group(1), *filter(None, match.group(2).split("."))])
    return fields, variables


def _template_tree(text: str) -> _Node:
    """A Go template's nodes: text, actions and branches with their bodies (no execution)."""
    root = _Node("list")
    stack: list[tuple[_Node, _Node, bool]] = []  # (branch, list it sits in, chained else-if)
    current = root
    position = 0
    trim_next = False
    for match in _ACTION.finditer(text):
        chunk = text[position : match.start()]
        position = match.end()
        if trim_next:
            chunk = chunk.lstrip()
        if match.group(1):
            chunk = chunk.rstrip()
        trim_next = bool(match.group(3))
        if chunk:
            current.nodes.append(_Node("text", chunk))
        body = match.group(2).strip()
        if not body or body.startswith("/*"):
            continue
        word, _, rest = body.partition(" ")
        rest = rest.strip()
        if word in _BRANCHES:
            branch = _Node(word, rest, [])
            current.nodes.append(branch)
            stack.append((branch, current, False))
            current = _Node("list", nodes=branch.nodes)
        elif word == "else" and stack:
            branch = stack[-1][0]
            branch.other = _Node("list")
            follow = rest.partition(" ")[0]
            if follow in ("if", "with"):
                nested = _Node(follow, rest[len(follow) :].strip(), [])
                branch.other.nodes.append(nested)
                stack.append((nested, branch.other, True))
                current = _Node("list", nodes=nested.nodes)
            else:
                current = branch.other
        elif word == "end" and stack:
            while True:
                _branch, parent, chained = stack.pop()
                if not chained or not stack:
                    break
            current = parent
        else:
            current.nodes.append(_Node("template" if word == "template" else "action", body))
    tail = text[position:]
    if trim_next:
        tail = tail.lstrip()
    if tail:
        current.nodes.append(_Node("text", tail))
    return root


def _lists(node: _Node) -> list[_Node]:
    """A branch's body and else lists as list nodes (the tree keeps bodies as plain lists)."""
    lists = [_Node("list", nodes=node.nodes)]
    if node.other is not None:
        lists.append(node.other)
    return lists


def template_capabilities(template: str | None) -> list[str]:
    """The capabilities a Go TEMPLATE gives a model, as Ollama v0.32.15 infers them."""
    if not template:
        return []
    root = _template_tree(template)
    names: set[str] = set()
    opening = closing = ""
    ancestors: list[_Node] = []

    def visit(node: _Node) -> None:
        nonlocal opening, closing
        ancestors.append(node)
        if node.kind not in ("list", "text"):
            fields, variables = _identifiers(node.text)
            for chain in fields + variables:
                names.update(part.lower() for part in chain)
            if any(chain[0] == "Thinking" for chain in fields):
                ranges = [a for a in ancestors[:-1] if a.kind == "range"]
                if ranges and any(c[0] == "Messages" for c in _identifiers(ranges[-1].text)[0]):
                    for holder in reversed(ancestors[:-1]):
                        if holder.kind == "list" and holder.nodes:
                            first, last = holder.nodes[0], holder.nodes[-1]
                            if first.kind == "text":
                                opening = first.text.strip()
                            if last.kind == "text":
                                closing = last.text.strip()
                            break
        if node.kind == "list":
            for child in node.nodes:
                visit(child)
        elif node.kind in _BRANCHES:
            for body in _lists(node):
                visit(body)
        ancestors.pop()

    visit(root)
    found = []
    if "tools" in names:
        found.append("tools")
    if "suffix" in names:
        found.append("insert")
    if opening and closing:
        found.append("thinking")
    return found
