# SPDX-License-Identifier: GPL-3.0-or-later
"""The change matrix of the netns_nat role on the nftables backend (tests/support/change_matrix.py):
each edit v1 -> v2 ends exactly where v2 alone ends, with the traffic v2 asks for, and
absent gives back the host as it was. One file per backend so that the two run in parallel."""
import pytest

from tests.support import change_matrix

pytestmark = pytest.mark.controller_only


@pytest.fixture(scope='module')
def lab(tmp_path_factory):
    built = change_matrix.MatrixLab(tmp_path_factory.mktemp('matrix-nftables'), 'nftables')
    try:
        yield built
    finally:
        built.close()


@pytest.mark.parametrize('edit', change_matrix.EDITS, ids=lambda edit: edit.__name__)
def test_edit_converges_like_a_fresh_apply(lab, edit):
    change_matrix.run_edit(lab, edit)
