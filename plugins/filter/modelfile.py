"""Filters that write Modelfile instructions correctly quoted (module_utils/modelfile/).

Jinja Modelfile templates build their instructions with these so that any value an
operator gives (a multi-line system prompt, a stop token with quotes) is written in a form
Ollama's parser reads back unchanged:

  {{ 'system' | localllm.fleet.modelfile_line(model.system) }}      SYSTEM, quoted as needed
  {{ 'temperature' | localllm.fleet.modelfile_line(0.6) }}          PARAMETER temperature 0.6
  {{ 'message' | localllm.fleet.modelfile_line('user', 'Hi') }}     MESSAGE user Hi
"""

from __future__ import annotations

from ansible.errors import AnsibleFilterError

from ansible_collections.localllm.fleet.plugins.module_utils import modelfile


def _text(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def modelfile_line(name: str, value, content=None) -> str:
    """One instruction: FROM/TEMPLATE/SYSTEM/LICENSE/... by keyword, MESSAGE with a role,
    anything else as PARAMETER <name> <value>."""
    keyword = str(name).lower()
    if keyword == "from":
        command = modelfile.Command("model", _text(value))
    elif keyword == "message":
        if content is None:
            raise AnsibleFilterError("modelfile_line('message', ROLE, CONTENT) needs the content")
        if value not in modelfile.MESSAGE_ROLES:
            raise AnsibleFilterError(
                f"message role must be one of {', '.join(modelfile.MESSAGE_ROLES)}, not {value!r}"
            )
        command = modelfile.Command("message", f"{value}: {_text(content)}")
    elif keyword in modelfile.PLAIN_KEYWORDS:
        command = modelfile.Command(keyword, _text(value))
    else:
        command = modelfile.Command(str(name), _text(value))
    try:
        return modelfile.serialize([command]).rstrip("\n")
    except ValueError as exc:
        raise AnsibleFilterError(str(exc)) from exc


def modelfile_check(text: str, name: str | None = None) -> str:
    """The text unchanged when Ollama's parser accepts it; else Ollama's own error."""
    try:
        modelfile.parse(str(text))
    except modelfile.ModelfileError as exc:
        where = f" for {name}" if name else ""
        raise AnsibleFilterError(f"invalid Modelfile{where}: {exc}") from exc
    return text


class FilterModule:
    """Modelfile filters."""

    def filters(self):
        return {"modelfile_line": modelfile_line, "modelfile_check": modelfile_check}
