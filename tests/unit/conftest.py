# SPDX-License-Identifier: GPL-3.0-or-later
"""Fixtures shared by the unit tests."""
import os

import pytest

from ansible_collections.linuxnet.netns.plugins.module_utils import kind


@pytest.fixture
def private_state_lock(monkeypatch, tmp_path):
    """Calls outside check mode take the host's state lock: one of the test's own here (no
    root needed, no wait for a real run), let go after the test. Returns its path."""
    path = str(tmp_path / 'state.lock')
    monkeypatch.setattr(kind, 'STATE_LOCK_PATH', path)
    monkeypatch.setattr(kind, 'HELD_LOCKS', {})
    yield path
    for fd in kind.HELD_LOCKS.values():
        os.close(fd)
