DOCUMENTATION = r"""
name: python_archive
short_description: Pack Python source files into one reproducible zip on the control node
description:
  - Packs the files named in the terms, read under O(root), into a zip whose members are
    O(prefix)/<term>, with an entry for each directory (namespace packages import from it),
    fixed times and modes, and returns the archive's path on the control node.
  - The same files always give the same bytes, so a role can ship a tool's code with one
    C(ansible.builtin.copy) that reports no change on a converged host. The archive is
    written once per content (its name is its sha256) into this run's local temporary
    directory, which Ansible removes when the run ends.
options:
  _terms:
    description: File names relative to O(root) (plain relative paths).
    required: true
    type: list
    elements: str
  root:
    description: The directory the names are read under.
    required: true
    type: path
  prefix:
    description: Directory the files get inside the archive.
    type: str
    default: ""
"""

EXAMPLES = r"""
- name: Ship the collector's code as one file
  ansible.builtin.copy:
    src: "{{ lookup('localllm.fleet.python_archive', 'fleet_metrics.py', 'ollama_api.py',
          root=role_path ~ '/../../plugins/module_utils',
          prefix='ansible_collections/localllm/fleet/plugins/module_utils') }}"
    dest: /usr/local/lib/tool/code.zip
    mode: "0644"
"""

RETURN = r"""
_raw:
  description: The archive's path on the control node (one element).
  type: list
  elements: path
"""

import hashlib
import os
import tempfile

from ansible import constants as C
from ansible.errors import AnsibleLookupError
from ansible.plugins.lookup import LookupBase

from ansible_collections.localllm.fleet.plugins.module_utils import python_archive


class LookupModule(LookupBase):
    def run(self, terms, variables=None, **kwargs):
        self.set_options(var_options=variables, direct=kwargs)
        root = self.get_option("root")
        prefix = self.get_option("prefix").strip("/")
        files = []
        try:
            for term in terms:
                name = python_archive.member_name("", str(term))
                with open(os.path.join(root, name), "rb") as source:
                    files.append((python_archive.member_name(prefix, name), source.read()))
            data = python_archive.build(files)
        except (OSError, python_archive.ArchiveError) as error:
            raise AnsibleLookupError(f"python_archive: {error}") from error
        directory = os.path.join(C.DEFAULT_LOCAL_TMP, "python_archive")
        os.makedirs(directory, mode=0o700, exist_ok=True)
        path = os.path.join(directory, hashlib.sha256(data).hexdigest() + ".zip")
        if not os.path.exists(path):
            handle, partial = tempfile.mkstemp(dir=directory, suffix=".partial")
            with os.fdopen(handle, "wb") as out:
                out.write(data)
            os.replace(partial, path)
        return [path]
