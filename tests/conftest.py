# SPDX-License-Identifier: GPL-3.0-or-later
"""Makes `ansible_collections.linuxnet.netns` importable for every test."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tests.support.paths import ensure_collection_link  # noqa: E402

_root = ensure_collection_link()
if _root not in sys.path:
    sys.path.insert(0, _root)
