# SPDX-License-Identifier: GPL-3.0-or-later
"""Where the collection is importable from: a symlink tree ending in
ansible_collections/linuxnet/netns (ansible-test and ansible-doc need that shape)."""
import os

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
COLLECTIONS_ROOT = os.path.join(REPO_ROOT, '.build', 'collections')
COLLECTION_LINK = os.path.join(COLLECTIONS_ROOT, 'ansible_collections', 'linuxnet', 'netns')


def ensure_collection_link():
    if not os.path.islink(COLLECTION_LINK):
        os.makedirs(os.path.dirname(COLLECTION_LINK), exist_ok=True)
        try:
            os.symlink(REPO_ROOT, COLLECTION_LINK)
        except FileExistsError:
            pass
    return COLLECTIONS_ROOT
