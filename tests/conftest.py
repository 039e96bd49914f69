"""Make the collection importable from a clone, as Ansible does through ansible.cfg.

collections/ansible_collections/localllm/fleet is a link to the repository root, so
`ansible_collections.localllm.fleet.plugins.module_utils.<name>` imports the working tree.
"""

import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
_COLLECTIONS = str(REPO_ROOT / "collections")
if _COLLECTIONS not in sys.path:
    sys.path.insert(0, _COLLECTIONS)
