# SPDX-License-Identifier: GPL-3.0-or-later
"""The example kind of docs/DEVELOPING.md ("Adding a kind") is real code: run through
kind.execute it validates, plans, applies outside check mode and rolls back on failure."""
import os
import re

import pytest

from ansible_collections.linuxnet.netns.plugins.module_utils import kind
from ansible_collections.linuxnet.netns.plugins.module_utils.common import KindError, Report, check_errors
from ansible_collections.linuxnet.netns.plugins.module_utils.kind import CallContext
from ansible_collections.linuxnet.netns.plugins.module_utils.links import ip_command
from ansible_collections.linuxnet.netns.plugins.module_utils.validation import ValidationError, check_netns_name

from tests.support.paths import REPO_ROOT


class Module(object):
    def __init__(self, check_mode=False):
        self.check_mode = check_mode
        self._diff = True

    def warn(self, warning):
        raise AssertionError(warning)


def example_kind(mtus, fail_on=None):
    """The documented module_utils file, with a dict standing in for the kernel; writing
    ``fail_on`` (namespace, mtu) is refused."""
    with open(os.path.join(REPO_ROOT, 'docs', 'DEVELOPING.md')) as handle:
        text = handle.read()
    code = re.search(r'```python\n(# plugins/module_utils/netns_lo_mtu_call.py.*?)```', text, re.S).group(1)

    def write_lo_mtu(name, mtu):
        if (name, mtu) == fail_on:
            raise OSError('refused')
        mtus[name] = mtu

    api = dict(check_netns_name=check_netns_name, ValidationError=ValidationError, check_errors=check_errors,
               Report=Report, ip_command=ip_command, read_lo_mtu=mtus.__getitem__,
               write_lo_mtu=write_lo_mtu)
    exec(compile(code, 'DEVELOPING.md', 'exec'), api)
    return type('netns_lo_mtu_call', (object,), dict((step, staticmethod(api[step])) for step in (
        'argument_spec', 'validate', 'read', 'plan', 'apply', 'result')))


@pytest.fixture(autouse=True)
def own_state_lock(private_state_lock):
    """Each test with a state lock of its own (tests/unit/conftest.py)."""


def test_the_example_is_about_thirty_lines():
    with open(os.path.join(REPO_ROOT, 'docs', 'DEVELOPING.md')) as handle:
        code = re.search(r'```python\n# plugins/module_utils/netns_lo_mtu_call.py.*?\n(.*?)```', handle.read(), re.S)
    assert len([line for line in code.group(1).splitlines() if line.strip()]) <= 30


def test_the_example_converges_and_a_second_call_changes_nothing():
    mtus = {'a': 65536, 'b': 1500}
    call = example_kind(mtus)
    first = kind.execute(call, {'namespaces': ['a', 'b'], 'mtu': 1500}, CallContext(Module()))
    assert first['changed'] and first['moved'] == ['a'] and mtus == {'a': 1500, 'b': 1500}
    assert first['commands'] == ['ip -n a link set lo mtu 1500']
    assert first['diff']['before'] == 'netns a lo mtu 65536\nnetns b lo mtu 1500\n'
    again = kind.execute(call, {'namespaces': ['a', 'b'], 'mtu': 1500}, CallContext(Module()))
    assert not again['changed'] and again['commands'] == []


def test_the_example_changes_nothing_in_check_mode_and_on_bad_input():
    mtus = {'a': 65536}
    call = example_kind(mtus)
    preview = kind.execute(call, {'namespaces': ['a'], 'mtu': 9000}, CallContext(Module(check_mode=True)))
    assert preview['changed'] and mtus == {'a': 65536}
    with pytest.raises(KindError) as failed:
        kind.execute(call, {'namespaces': ['a', 'bad/name'], 'mtu': 9000}, CallContext(Module(check_mode=True)))
    assert failed.value.fields['field'] == 'namespaces[1]' and mtus == {'a': 65536}


def test_the_example_undoes_its_writes_when_one_fails():
    mtus = {'a': 65536, 'b': 65536}
    with pytest.raises(KindError) as failed:
        kind.execute(example_kind(mtus, fail_on=('b', 1400)), {'namespaces': ['a', 'b'], 'mtu': 1400},
                     CallContext(Module()))
    assert 'refused' in failed.value.msg and 'everything this call had created was removed' in failed.value.msg
    assert mtus == {'a': 65536, 'b': 65536}
