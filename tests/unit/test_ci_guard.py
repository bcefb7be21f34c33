# SPDX-License-Identifier: GPL-3.0-or-later
"""Integration tests skip themselves without root, except in CI, where a skip would make a
run that tested nothing look green."""
import pytest

from tests.integration import conftest


class Item(object):
    def __init__(self):
        self.markers = []

    def add_marker(self, marker):
        self.markers.append(marker)


def test_without_root_in_ci_the_run_fails(monkeypatch):
    monkeypatch.setattr(conftest.os, 'geteuid', lambda: 1000)
    monkeypatch.setenv('CI', 'true')
    with pytest.raises(pytest.UsageError, match='integration tests need root'):
        conftest.pytest_collection_modifyitems(None, [Item()])


def test_without_root_elsewhere_they_are_skipped(monkeypatch):
    monkeypatch.setattr(conftest.os, 'geteuid', lambda: 1000)
    monkeypatch.delenv('CI', raising=False)
    item = Item()
    conftest.pytest_collection_modifyitems(None, [item])
    assert [marker.name for marker in item.markers] == ['skip']
