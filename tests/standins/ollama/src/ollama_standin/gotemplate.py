"""The parts of Go's text/template that Ollama's server looks at in a TEMPLATE.

Ollama parses every TEMPLATE when a model is created (a syntax error fails the create), lists
the fields it uses (.Tools -> "tools" capability, .Suffix -> "insert") and infers the thinking
tags around {{ .Thinking }} inside a range over .Messages ("thinking" capability). This module
builds the same parse tree shape for those three questions. It does not execute templates.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field


class TemplateError(ValueError):
    pass


@dataclass
class Text:
    text: str


@dataclass
class Action:
    pipe: str
    line: int


@dataclass
class ListNode:
    nodes: list = field(default_factory=list)


@dataclass
class Branch:
    kind: str  # if, range, with, block, define, template
    pipe: str
    line: int
    body: ListNode = field(default_factory=ListNode)
    else_body: ListNode | None = None


_STRING_RE = re.compile(r'"(?:[^"\\]|\\.)*"|`[^`]*`|\'(?:[^\'\\]|\\.)*\'')
_FIELD_RE = re.compile(r"(?<![\w)\]$.])\.([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*)")
_VAR_RE = re.compile(r"(\$\w*)((?:\.[A-Za-z_]\w*)*)")


def _strip_strings(pipe: str) -> str:
    return _STRING_RE.sub('""', pipe)


def fields(pipe: str) -> list[list[str]]:
    """FieldNode identifiers in a pipeline (`.A.B` -> ['A', 'B'])."""
    return [m.group(1).split(".") for m in _FIELD_RE.finditer(_strip_strings(pipe))]


def variables(pipe: str) -> list[list[str]]:
    out = []
    for m in _VAR_RE.finditer(_strip_strings(pipe)):
        chain = [m.group(1)] + [p for p in m.group(2).split(".") if p]
        out.append(chain)
    return out


def _lex(text: str) -> list[tuple[str, str, int]]:
    """Split into ("text", s, line) and ("action", inner, line) items, applying trim markers."""
    items: list[tuple[str, str, int]] = []
    pos = 0
    line = 1
    while True:
        start = text.find("{{", pos)
        if start < 0:
            items.append(("text", text[pos:], line))
            break
        chunk = text[pos:start]
        trim_left = (
            text.startswith("{{- ", start)
            or text.startswith("{{-\t", start)
            or text.startswith("{{-\n", start)
        )
        if trim_left:
            chunk = chunk.rstrip(" \t\r\n")
        items.append(("text", chunk, line))
        line += text[pos:start].count("\n")
        inner_start = start + (3 if trim_left else 2)
        # find the closing delimiter outside of quoted strings and comments
        i = inner_start
        end = -1
        while i < len(text):
            ch = text[i]
            if text.startswith("/*", i):
                close = text.find("*/", i + 2)
                if close < 0:
                    raise TemplateError(f"template: :{line}: unclosed comment")
                i = close + 2
                continue
            if ch in "\"`'":
                m = _STRING_RE.match(text, i)
                if not m:
                    if ch == "`":
                        raise TemplateError(f"template: :{line}: unterminated raw quoted string")
                    raise TemplateError(f"template: :{line}: unterminated quoted string")
                i = m.end()
                continue
            if text.startswith("}}", i):
                end = i
                break
            if ch == "\n" and not text[inner_start:i].strip().startswith("/*"):
                # Go allows newlines inside actions only within comments and raw strings
                pass
            i += 1
        if end < 0:
            raise TemplateError(f"template: :{line}: unclosed action")
        inner = text[inner_start:end]
        trim_right = inner.endswith(" -") or inner.endswith("\t-") or inner.endswith("\n-")
        if trim_right:
            inner = inner[:-2]
        items.append(("action", inner.strip(), line))
        line += text[start:end].count("\n")
        pos = end + 2
        if trim_right:
            rest = text[pos:]
            stripped = rest.lstrip(" \t\r\n")
            line += rest[: len(rest) - len(stripped)].count("\n")
            pos = len(text) - len(stripped)
    return items


_KEYWORDS = ("if", "range", "with", "block", "define")


@dataclass
class Template:
    raw: str
    root: ListNode
    defines: list[ListNode]

    def vars(self) -> list[str]:
        """Template.Vars: every field and variable identifier, lowercased and sorted."""
        found: set[str] = set()

        def visit(node: object) -> None:
            if isinstance(node, ListNode):
                for child in node.nodes:
                    visit(child)
            elif isinstance(node, Action):
                _collect(node.pipe, found)
            elif isinstance(node, Branch):
                _collect(node.pipe, found)
                visit(node.body)
                if node.else_body is not None:
                    visit(node.else_body)

        visit(self.root)
        for define in self.defines:
            visit(define)
        return sorted(found)

    def infer_thinking_tags(self) -> tuple[str, str]:
        """thinking.InferTags: tags around {{ .Thinking }} in a range over .Messages."""
        opening = ""
        closing = ""
        ancestors: list[object] = []

        def visit(node: object) -> None:
            nonlocal opening, closing
            ancestors.append(node)
            pipe = node.pipe if isinstance(node, (Action, Branch)) else None
            if pipe is not None and any(f[0] == "Thinking" for f in fields(pipe)):
                rng = next(
                    (a for a in reversed(ancestors) if isinstance(a, Branch) and a.kind == "range"),
                    None,
                )
                if rng is not None and any(f[0] == "Messages" for f in fields(rng.pipe)):
                    for a in reversed(ancestors[:-1]):
                        if isinstance(a, ListNode) and a.nodes:
                            first, last = a.nodes[0], a.nodes[-1]
                            if isinstance(first, Text):
                                opening = first.text.strip()
                            if isinstance(last, Text):
                                closing = last.text.strip()
                            break
            if isinstance(node, ListNode):
                for child in node.nodes:
                    visit(child)
            elif isinstance(node, Branch):
                visit(node.body)
                if node.else_body is not None:
                    visit(node.else_body)
            ancestors.pop()

        visit(self.root)
        return opening, closing


def _collect(pipe: str, found: set[str]) -> None:
    for chain in fields(pipe):
        found.update(part.lower() for part in chain)
    for chain in variables(pipe):
        found.update(part.lower() for part in chain)


def parse(raw: str) -> Template:
    """Parse like template.New("").Parse; raise TemplateError with Go's message."""
    items = _lex(raw)
    root = ListNode()
    defines: list[ListNode] = []
    # open branches: (branch, list to return to, chained by {{else if}})
    stack: list[tuple[Branch, ListNode, bool]] = []
    current = root
    last_line = raw.count("\n") + 1
    for kind, value, line in items:
        if kind == "text":
            if value:
                current.nodes.append(Text(value))
            continue
        if value.startswith("/*"):
            continue
        if value == "":
            raise TemplateError(f"template: :{line}: missing value for command")
        word = value.split(None, 1)[0]
        rest = value[len(word) :].strip()
        if word in _KEYWORDS:
            branch = Branch(kind=word, pipe=rest, line=line)
            if word == "define":
                defines.append(branch.body)
            else:
                current.nodes.append(branch)
            stack.append((branch, current, False))
            current = branch.body
            continue
        if word == "else":
            if not stack or stack[-1][0].kind not in ("if", "range", "with"):
                raise TemplateError(f"template: :{line}: unexpected {{{{else}}}}")
            branch = stack[-1][0]
            if branch.else_body is not None:
                raise TemplateError(f"template: :{line}: expected end; found {{{{else}}}}")
            branch.else_body = ListNode()
            follow = rest.split(None, 1)[0] if rest else ""
            if follow in ("if", "with"):
                # {{else if x}} is {{else}}{{if x}}...{{end}}{{end}} sharing one {{end}}
                nested = Branch(kind=follow, pipe=rest[len(follow) :].strip(), line=line)
                branch.else_body.nodes.append(nested)
                stack.append((nested, branch.else_body, True))
                current = nested.body
            else:
                current = branch.else_body
            continue
        if word == "end":
            if not stack:
                raise TemplateError(f"template: :{line}: unexpected {{{{end}}}}")
            while True:
                branch, parent, chained = stack.pop()
                if not chained:
                    break
            current = parent
            continue
        if word in ("break", "continue") and not any(b.kind == "range" for b, _, _ in stack):
            raise TemplateError(f"template: :{line}: {{{{{word}}}}} outside {{{{range}}}}")
        if word == "template":
            current.nodes.append(Branch(kind="template", pipe=rest, line=line))
        else:
            current.nodes.append(Action(pipe=value, line=line))
    if stack:
        raise TemplateError(f"template: :{last_line}: unexpected EOF")
    return Template(raw=raw, root=root, defines=defines)
