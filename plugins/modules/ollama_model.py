#!/usr/bin/python
# Copyright (c) localllm.fleet contributors
# Apache License 2.0 (see galaxy.yml)
"""Ansible module localllm.fleet.ollama_model: register a model from a Modelfile, by content."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: ollama_model
short_description: Create, update or remove an Ollama model from a Modelfile, by content
version_added: "0.1.0"
description:
  - Registers the model O(name) from a Modelfile through the host's Ollama API, as
    C(ollama create NAME -f Modelfile) would, or removes it.
  - Idempotent by the model's content, not by whether a file changed. The module predicts
    what Ollama would register (base model layers, GGUF import, typed parameters including
    those the base model contributes, template, system, license, messages, adapters,
    renderer, parser) and compares it with what the existing model holds (C(/api/show)).
    Only when they differ is the model created, and only then are local files uploaded.
  - A local file named by C(FROM), C(ADAPTER) or C(DRAFT) must be GGUF or safetensors
    weights (checked from its first bytes before it is hashed or uploaded); anything else
    fails the task and is never copied into Ollama's store.
  - The Modelfile is parsed and validated as Ollama's own client does it (Ollama v0.32.15);
    an invalid one fails with Ollama's error text, for example C(invalid float value [hot]).
  - A C(TEMPLATE) must not claim a capability (tools, insert, thinking) that the C(FROM) model
    lacks; the module fails naming it. One that drops a capability the base has is warned
    about. Without a C(TEMPLATE) the model inherits its base's, and with it every capability.
  - A base model named in C(FROM) must already be on the host (use
    M(localllm.fleet.ollama_pull) or M(localllm.fleet.ollama_bundle)); unlike
    C(ollama create), this module never pulls implicitly.
  - Importing a GGUF file makes Ollama re-serialize it, so the model layer's digest may
    differ from the file's. The module remembers which layer an import produced
    (in C(~/.cache/localllm-fleet/) of the remote user), and remembers file digests by
    device, inode, size and times, so a converged host neither re-imports nor re-hashes
    hundreds of GB. Losing that cache costs one re-import, never a wrong answer, because
    after a create C(changed) is whether the model's manifest digest actually changed.
author:
  - localllm.fleet contributors
options:
  name:
    description:
      - The model to register, e.g. C(fleet/deepseek-r1:32b). A missing tag means C(latest).
    type: str
    required: true
  state:
    description:
      - V(present) registers the model as the Modelfile describes; V(absent) deletes it.
    type: str
    choices: [present, absent]
    default: present
  modelfile:
    description:
      - The Modelfile text. Mutually exclusive with O(modelfile_path).
      - Relative C(FROM)/C(ADAPTER) paths need O(base_dir).
    type: str
  modelfile_path:
    description:
      - Path of the Modelfile on the managed host.
    type: path
  base_dir:
    description:
      - Directory that relative C(FROM), C(ADAPTER) and C(DRAFT) paths are resolved against.
      - Defaults to the directory of O(modelfile_path). Required when O(modelfile) text
        names a relative path.
    type: path
  models_dir:
    description:
      - The Ollama store on the host (C(OLLAMA_MODELS)). When given, an import is refused
        before the upload when the store's file system lacks the room for it (twice the
        size of C(FROM)/C(DRAFT) files, for the upload and Ollama's re-serialized copy), and
        blobs uploaded for a create that then fails are removed again. Without it they
        stay until Ollama prunes unreferenced blobs at its next start.
    type: path
  timeout:
    description:
      - Seconds an answer from Ollama may take (at least V(1)). An import of a big GGUF streams
        progress, so this bounds the silence between lines, not the whole import; while Ollama
        hashes the imported copy (it reports nothing then), at least one second per 100 MB is
        allowed.
    type: int
    default: 600
notes:
  - Check mode writes nothing (no upload, no create, no cache update) and reports the same
    C(changed), C(differences) and C(diff) a real run would. On a host whose Ollama does
    not answer (a host new to the fleet, where a real run installs Ollama first) it warns
    and predicts the model registered from the Modelfile instead of failing; outside check
    mode that is an error.
  - With C(--diff), both sides are the model as a Modelfile in one fixed layout with the
    base model's contributions merged in, so the diff shows only what changes.
  - Ollama has no authentication; anything that reaches O(api_url) can change models.
extends_documentation_fragment:
  - localllm.fleet.ollama_api
seealso:
  - module: localllm.fleet.ollama_pull
  - module: localllm.fleet.ollama_info
  - module: localllm.fleet.ollama_bundle
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
"""

EXAMPLES = r"""
- name: Register a tuned model from a Modelfile on the host
  localllm.fleet.ollama_model:
    name: fleet/deepseek-r1:32b
    modelfile_path: /etc/ollama/modelfiles/deepseek-r1-32b.Modelfile

- name: Register a model from inline text on top of a pulled base
  localllm.fleet.ollama_model:
    name: fleet/qwq:32b
    modelfile: |
      FROM qwq:32b
      PARAMETER temperature 0.6
      PARAMETER num_ctx 32768

- name: Import a GGUF file from the model cache
  localllm.fleet.ollama_model:
    name: fleet/gemma3:27b
    modelfile: |
      FROM ./gemma3-27b-q4_k_m.gguf
      PARAMETER temperature 1
    base_dir: /var/cache/localllm-fleet/models

- name: Remove a model
  localllm.fleet.ollama_model:
    name: fleet/old-model:latest
    state: absent
"""

RETURN = r"""
name:
  description: The model's name as Ollama lists it.
  returned: always
  type: str
  sample: fleet/deepseek-r1:32b
digest:
  description:
    - The model's manifest digest as C(/api/tags) reports it, after the task.
    - C(null) when the model does not exist (absent, or not yet created in check mode).
  returned: always
  type: str
  sample: 5610b3113e2cb2cfeb244cf2a4445c45aea70196ce123e51871560d375f7692b
differences:
  description:
    - What differs between the registered model and the desired one, one line each;
      C(created) for a new model, C(deleted) for a removed one, a line starting C(repaired) for a
      model Ollama cannot read (a blob lost from the store), empty when nothing changes.
  returned: always
  type: list
  elements: str
  sample: ["parameter temperature: 0.6 -> 0.5"]
diff:
  description: The model as a Modelfile before and after (C('') when it does not exist).
  returned: always
  type: dict
  contains:
    before:
      description: The registered model (merged with its base), or C('').
      type: str
    after:
      description: The desired model (the Modelfile merged with its base), or C('').
      type: str
warnings:
  description: Deprecated parameters the Modelfile uses (Ollama ignores them).
  returned: when there are any
  type: list
  elements: str
  sample: ["parameter mirostat is deprecated"]
"""

import os
import shutil
import tempfile
from typing import Any

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.localllm.fleet.plugins.module_utils.digest_cache import (
    DigestCache,
    ImportRecords,
)
from ansible_collections.localllm.fleet.plugins.module_utils.model_bundle import (
    remove_unreferenced,
)
from ansible_collections.localllm.fleet.plugins.module_utils.model_state import (
    ModelContent,
    content_from_show,
    desired_content,
    differences,
    files_key,
    for_display,
    learn_import,
    render,
)
from ansible_collections.localllm.fleet.plugins.module_utils.modelfile._capabilities import (
    TEMPLATE_CAPABILITIES,
    template_capabilities,
)
from ansible_collections.localllm.fleet.plugins.module_utils.modelfile._create import (
    check_model_file,
    create_request,
    expand_path,
    validate_model_name,
)
from ansible_collections.localllm.fleet.plugins.module_utils.modelfile._syntax import (
    MAX_MODELFILE_BYTES,
    Modelfile,
    ModelfileError,
    parse,
    parse_bytes,
    serialize,
)
from ansible_collections.localllm.fleet.plugins.module_utils.ollama_api import (
    API_ARGUMENT_SPEC,
    ModelName,
    OllamaClient,
    OllamaError,
    OllamaUnreachable,
)
from ansible_collections.localllm.fleet.plugins.module_utils.progress import space_problem


class BaseMissing(Exception):
    """The FROM model is not on the host (yet)."""


class TaskError(Exception):
    """A failure with a message for the operator."""


def _is_relative(arg: str) -> bool:
    return not arg.startswith(("/", "\\", "~"))


def _check_relative_paths(modelfile: Modelfile) -> None:
    """Modelfile text without base_dir: relative paths have nowhere to resolve."""
    for command in modelfile.commands:
        if command.name in ("adapter", "draft") and _is_relative(command.args):
            raise TaskError(
                f"{command.name.upper()} {command.args} is a relative path: "
                "give base_dir (or modelfile_path) so that it can be found"
            )
        if command.name == "model" and _is_relative(command.args):
            try:
                validate_model_name(command.args)
            except ModelfileError:
                raise TaskError(
                    f"FROM {command.args} is neither a model name nor an absolute path: "
                    "give base_dir (or modelfile_path) to import a file"
                ) from None


def _base_content(
    client: OllamaClient, request: dict[str, Any], base_dir: str | None
) -> tuple[ModelContent | None, dict[str, Any] | None]:
    """The FROM model's content and /api/show; TaskError when it is not on the host."""
    source = request.get("from")
    if not source:
        return None, None
    try:
        ModelName.parse(source)
    except ValueError:
        where = expand_path(source, base_dir) if base_dir else source
        raise TaskError(
            f"FROM {source}: no file {where} and not a valid model name either"
        ) from None
    show = client.show(source)
    if show is None:
        hint = ""
        if base_dir and source.lower().endswith((".gguf", ".bin", ".safetensors")):
            hint = f" (and there is no file {expand_path(source, base_dir)})"
        raise BaseMissing(
            f"base model '{source}' is not on this host{hint}: pull or import it first"
        )
    return content_from_show(show), show


def _check_capabilities(
    module: AnsibleModule, request: dict[str, Any], base_show: dict[str, Any] | None
) -> None:
    """A TEMPLATE must not claim what the base model cannot do, nor take away what it can.

    Ollama derives tools, insert and thinking from the template (server/images.go): a
    template that claims tools on a model without them makes clients send tools the model
    ignores; one that drops them takes tool calling away from every client.
    """
    template = request.get("template")
    if not template or base_show is None:
        return  # the base's own template is inherited, or a file import has none to compare
    base = [str(c) for c in base_show.get("capabilities") or []]
    claimed = template_capabilities(template)
    extra = [c for c in claimed if c not in base]
    if extra:
        raise TaskError(
            "the TEMPLATE claims {} which the base {} does not have (its capabilities: {}): "
            "use a template without it, or a base that has it".format(
                " and ".join(extra), request.get("from"), ", ".join(base) or "none"
            )
        )
    dropped = [c for c in base if c in TEMPLATE_CAPABILITIES and c not in claimed]
    if dropped:
        module.warn(
            "the TEMPLATE drops {} that the base {} has: clients lose it on this model".format(
                " and ".join(dropped), request.get("from")
            )
        )


def _from_label(modelfile: Modelfile) -> str:
    for command in modelfile.commands:
        if command.name == "model":
            return command.args
    return ""


def _digest(client: OllamaClient, name: ModelName) -> str | None:
    entry = client.find(name)
    return str(entry["digest"]) if entry and entry.get("digest") else None


def _load_modelfile(params: dict[str, Any]) -> tuple[Modelfile, str | None]:
    """(parsed Modelfile, base_dir); TaskError for unreadable or invalid input."""
    base_dir = params["base_dir"]
    try:
        if params["modelfile_path"]:
            path = params["modelfile_path"]
            try:
                with open(path, "rb") as handle:
                    data = handle.read(MAX_MODELFILE_BYTES + 1)  # parse_bytes refuses more
            except OSError as err:
                raise TaskError(f"cannot read the Modelfile {path}: {err.strerror}") from err
            base_dir = base_dir or os.path.dirname(os.path.abspath(path))
            return parse_bytes(data), base_dir
        modelfile = parse(params["modelfile"])
    except ModelfileError as err:
        raise TaskError(str(err)) from err
    if base_dir is None:
        _check_relative_paths(modelfile)
    return modelfile, base_dir


def present(module: AnsibleModule, client: OllamaClient, name: ModelName) -> dict[str, Any]:
    params = module.params
    modelfile, base_dir = _load_modelfile(params)
    for warning in modelfile.warnings:
        module.warn(warning)

    hashes = DigestCache(writable=not module.check_mode)
    imports = ImportRecords(writable=not module.check_mode)
    scratch = None if base_dir else tempfile.mkdtemp(prefix="ollama-model-")
    try:
        request, uploads = create_request(
            modelfile,
            model=params["name"],
            base_dir=base_dir or scratch or ".",
            digest_file=hashes.digest,
            check_file=check_model_file,
        )
    except ModelfileError as err:
        raise TaskError(str(err)) from err
    finally:
        if scratch:
            shutil.rmtree(scratch, ignore_errors=True)

    broken = ""
    try:
        existing_show = client.show(params["name"])
    except OllamaUnreachable as err:
        if not module.check_mode:
            raise
        # A host new to the fleet, where the real run installs and starts Ollama before it
        # registers anything: predict the registration rather than fail the dry run.
        module.warn(
            f"Ollama does not answer at {err.url} ({err.reason}): in check mode"
            f" {name.display_shortest()} cannot be compared with what Ollama holds; the plan"
            " shows it registered from this Modelfile (a real run starts Ollama first)"
        )
        return {
            "changed": True,
            "name": name.display_shortest(),
            "digest": None,
            "differences": [
                f"registered unless Ollama already holds the same: Ollama does not answer"
                f" ({err.reason})"
            ],
            "diff": {"before": "", "after": serialize(modelfile.commands)},
        }
    except OllamaError as err:
        if err.status != 500:
            raise
        existing_show, broken = None, str(err)  # e.g. a blob deleted from the store
    try:
        base, base_show = _base_content(client, request, base_dir)
    except BaseMissing as missing:
        if not module.check_mode:
            raise TaskError(str(missing)) from None
        # In check mode the run that would fetch the base has not fetched it: predict a
        # (re-)creation rather than fail the dry run of a host that is still to be set up.
        return {
            "changed": True,
            "name": name.display_shortest(),
            "digest": None,
            "differences": [
                f"{'created' if existing_show is None else 're-created'}: its base "
                f"{request.get('from')} is not on this host yet (a real run fetches it first)"
            ],
            "diff": {"before": "", "after": serialize(modelfile.commands)},
        }
    _check_capabilities(module, request, base_show)
    key = files_key(request) if request.get("files") else ""
    label = _from_label(modelfile)
    desired = desired_content(request, base, imports.get(key) if key else None, label)
    after = render(desired)
    if broken:
        diffs = [f"repaired: Ollama cannot read the registered model ({broken})"]
        before = ""
    elif existing_show is None:
        diffs = ["created"]
        before = ""
    else:
        existing = content_from_show(existing_show)
        diffs = differences(existing, desired)
        before = render(for_display(existing, desired))
    old_digest = _digest(client, name) if existing_show is not None or broken else None
    result: dict[str, Any] = {
        "changed": bool(diffs),
        "name": name.display_shortest(),
        "digest": old_digest,
        "differences": diffs,
        "diff": {
            "before": before,
            "after": after,
            "before_header": f"{name.display_shortest()} (registered)",
            "after_header": f"{name.display_shortest()} (desired)",
        },
    }
    if not diffs or module.check_mode:
        hashes.save()
        return result

    digests = {path: hashes.digest(path) for path in uploads}
    hashes.save()  # hashing 400 GB is worth remembering even if the upload fails
    _upload_and_create(module, client, name, request, digests)

    created_show = client.show(params["name"])
    if created_show is None:
        raise TaskError(f"Ollama reported success but {name.display_shortest()} does not exist")
    created = content_from_show(created_show)
    if key:
        imports.put(key, learn_import(imports.get(key), request, created))
        imports.save()
        desired = desired_content(request, base, imports.get(key), label)
    new_digest = _digest(client, name)
    result["digest"] = new_digest
    if new_digest == old_digest and not broken:
        # Re-created byte for byte (a first import of an unchanged file): nothing changed.
        result.update(changed=False, differences=[])
        result["diff"]["after"] = result["diff"]["before"]
    leftover = differences(created, desired)
    if leftover:
        module.warn(
            "the registered model still differs from the Modelfile in: "
            + "; ".join(leftover)
            + " (the next run will create it again)"
        )
    return result


def _upload_and_create(
    module: AnsibleModule,
    client: OllamaClient,
    name: ModelName,
    request: dict[str, Any],
    digests: dict[str, str],
) -> None:
    """Upload the blobs the server lacks (after checking there is room), then create; what
    this run uploaded is removed again if the create fails (with models_dir)."""
    models_dir = module.params["models_dir"]
    missing = [path for path in sorted(digests) if not client.blob_exists(digests[path])]
    copied_twice = {
        *(request.get("files") or {}).values(),
        *(request.get("draft_files") or {}).values(),
    }
    needed = sum(
        os.path.getsize(path) * (2 if digests[path] in copied_twice else 1) for path in missing
    )
    if models_dir and missing:
        problem = space_problem(models_dir, needed, name.display_shortest())
        if problem:
            raise TaskError(problem)
    uploaded: list[str] = []
    try:
        for path in missing:
            client.upload_blob(path, digests[path])
            uploaded.append(digests[path])
        client.create(request, import_bytes=sum(os.path.getsize(path) for path in digests))
    except (OllamaError, OllamaUnreachable) as err:
        if not uploaded:
            raise
        if models_dir:
            remove_unreferenced(models_dir, uploaded)
            raise
        count = len(set(uploaded))
        raise TaskError(
            f"{module.params['name']}: {err}; {count} uploaded blob{'s' if count > 1 else ''} "
            f"{'stay' if count > 1 else 'stays'} in the store until Ollama prunes "
            f"{'them' if count > 1 else 'it'} at its next start (give models_dir to remove "
            f"{'them' if count > 1 else 'it'} at once)"
        ) from err


def absent(module: AnsibleModule, client: OllamaClient, name: ModelName) -> dict[str, Any]:
    broken = False
    try:
        show = client.show(module.params["name"])
    except OllamaError as err:
        if err.status != 500:
            raise
        show, broken = None, True  # registered, but Ollama cannot read it (a lost blob)
    exists = show is not None or broken
    result: dict[str, Any] = {
        "changed": exists,
        "name": name.display_shortest(),
        "digest": None,
        "differences": ["deleted"] if exists else [],
        "diff": {"before": render(content_from_show(show)) if show else "", "after": ""},
    }
    if exists and not module.check_mode:
        client.delete(module.params["name"])
    return result


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "name": {"type": "str", "required": True},
            "state": {"type": "str", "default": "present", "choices": ["present", "absent"]},
            "modelfile": {"type": "str"},
            "modelfile_path": {"type": "path"},
            "base_dir": {"type": "path"},
            "models_dir": {"type": "path"},
            **API_ARGUMENT_SPEC,
        },
        mutually_exclusive=[("modelfile", "modelfile_path")],
        required_if=[("state", "present", ("modelfile", "modelfile_path"), True)],
        supports_check_mode=True,
    )
    params = module.params
    try:
        name = ModelName.parse(params["name"])
        client = OllamaClient(params["api_url"], params["timeout"])
    except ValueError as err:
        module.fail_json(msg=str(err))
    try:
        if params["state"] == "present":
            result = present(module, client, name)
        else:
            result = absent(module, client, name)
    except TaskError as err:
        module.fail_json(msg=str(err), name=params["name"])
    except OllamaUnreachable as err:
        module.fail_json(msg=str(err), name=params["name"])
    except OllamaError as err:
        module.fail_json(msg=f"{params['name']}: {err}", name=params["name"], status=err.status)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
