# SPDX-License-Identifier: GPL-3.0-or-later
"""netns_session.entered against the real kernel: setns(2) into a namespace and back,
also when the body raises, and without importing pyroute2 (modules that only read
/proc/sys or run iptables-restore do not pay for that import)."""
import os
import socket
import subprocess
import sys

import pytest

from ansible_collections.linuxnet.netns.plugins.module_utils import netns_session
from tests.support import harness, paths


def thread_netns_inode():
    return os.stat('/proc/thread-self/ns/net').st_ino


def interface_names():
    return sorted(name for dummy_index, name in socket.if_nameindex())


def test_enters_the_namespace_and_comes_back(netns):
    name = netns()
    harness.sh(['ip', '-n', name, 'link', 'add', 'sess0', 'type', 'veth', 'peer', 'name', 'sess1'])
    home = thread_netns_inode()
    with netns_session.entered(name):
        assert thread_netns_inode() == os.stat('/run/netns/' + name).st_ino
        assert interface_names() == ['lo', 'sess0', 'sess1']
        with open('/proc/sys/net/ipv4/ip_forward') as handle:  # /proc/sys/net of the namespace
            assert handle.read().strip() == '0'
    assert thread_netns_inode() == home
    assert 'sess0' not in interface_names()


def test_comes_back_when_the_body_raises(netns):
    name = netns()
    home = thread_netns_inode()
    with pytest.raises(RuntimeError, match='boom'):
        with netns_session.entered(name):
            assert thread_netns_inode() != home
            raise RuntimeError('boom')
    assert thread_netns_inode() == home


def test_a_missing_namespace_is_neither_entered_nor_created():
    ghost = harness.unique_name('gh')
    home = thread_netns_inode()
    with pytest.raises(netns_session.NamespaceMissing):
        with netns_session.entered(ghost):
            pytest.fail('the body must not run')
    assert thread_netns_inode() == home
    assert ghost not in harness.list_netns()


def test_entering_and_netlink_do_not_import_pyroute2_but_conntrack_does(netns):
    name = netns()
    code = '\n'.join([
        'import sys',
        'from ansible_collections.linuxnet.netns.plugins.module_utils import conntrack, links',
        'from ansible_collections.linuxnet.netns.plugins.module_utils import netns_session as s',
        'assert s.HAS_PYROUTE2',
        'with s.entered(%r):' % name,
        '    names = sorted(link.name for link in links.read_links())',
        'print("after entered:", "pyroute2" in sys.modules, names)',
        'conntrack.list_entries(%r)' % name,
        'print("after conntrack:", "pyroute2" in sys.modules)',
    ])
    env = dict(os.environ, PYTHONPATH=paths.COLLECTIONS_ROOT)
    python = harness.MODULE_PYTHON or sys.executable  # the pyroute2 0.7.2 pass sets it
    proc = subprocess.run([python, '-c', code], capture_output=True, text=True, env=env, check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["after entered: False ['lo']", 'after conntrack: True']


def test_processes_of_many_namespaces_from_one_scan(netns, monkeypatch):
    """pids_by_namespace reads /proc once, on its first question, and answers for every
    namespace from that scan: the process started in one is found there and nowhere else."""
    busy, idle = netns(), netns()
    sleeper = subprocess.Popen(['ip', 'netns', 'exec', busy, 'sleep', '30'])
    try:
        deadline = 50
        while deadline and os.readlink('/proc/%d/ns/net' % sleeper.pid) == os.readlink('/proc/self/ns/net'):
            deadline -= 1  # ip netns exec has not entered yet
            subprocess.run(['sleep', '0.1'], check=True)
        scans = []
        real_listdir = os.listdir
        monkeypatch.setattr(netns_session.os, 'listdir',
                            lambda path: scans.append(path) or real_listdir(path))
        pids_of = netns_session.pids_by_namespace()
        assert pids_of(busy) == [sleeper.pid]
        assert pids_of(idle) == []
        assert pids_of(harness.unique_name('gh')) == []  # no such namespace
        assert scans.count('/proc') == 1
    finally:
        sleeper.kill()
        sleeper.wait()
