# SPDX-License-Identifier: GPL-3.0-or-later
"""The netns_nat role under drift and concurrency (issue 6, faults).

Somebody flushes our NAT rules, deletes a veth, a route or a whole inner namespace by
hand: the next ansible-playbook run restores exactly what is missing (only the tasks that
own the missing objects report changed) and the host ends exactly as the first run left it.
Two ansible-playbook runs against the same host at the same time end in the correct state,
with no duplicate rule or object and no error.

Every host is a namespace of this machine reached through the linuxnet.netns.netns
connection plugin (tests/support/role_lab.py)."""
import fcntl
import os
import subprocess
import time

import pytest

from tests.support import harness
from tests.support import role_lab

pytestmark = pytest.mark.controller_only

TOPOLOGY_TASK = 'Build the topology (article steps 1-9, section 2.3)'


def two_namespaces(lab, **extra):
    first, second = lab.inner_name('dm'), lab.inner_name('dm')
    variables = {
        'netns_nat_egress_interface': 'eth0',
        'netns_nat_namespaces': [
            {'name': first, 'host_interface': 'veth1', 'host_address': '192.168.45.2/24',
             'inner_interface': 'veth2', 'inner_address': '192.168.45.3/24',
             'port_forwards': [{'protocol': 'tcp', 'published_port': 8080, 'target_port': 80}]},
            {'name': second, 'host_interface': 'veth3', 'host_address': '192.168.46.2/24',
             'inner_interface': 'veth4', 'inner_address': '192.168.46.3/24',
             'port_forwards': [{'protocol': 'udp', 'published_port': 5353}]},
        ]}
    variables.update(extra)
    return first, second, variables


@pytest.fixture(scope='module')
def drift(tmp_path_factory):
    """The role applied once; the reference snapshot every repair must return to."""
    lab = role_lab.RoleLab(tmp_path_factory.mktemp('drift'), tag='d')
    try:
        first, second, variables = two_namespaces(lab)
        run = lab.run(variables)
        assert run.rc == 0, run.output
        lab.first, lab.second, lab.variables = first, second, variables
        lab.reference = role_lab.normalized(lab.snapshot())
        yield lab
    finally:
        lab.close()


def rerun(lab):
    run = lab.run(lab.variables)
    assert run.rc == 0, run.output
    return run


def assert_restored(lab, run, parts):
    """Exactly the parts of the role's one module call that own what was missing report
    changed (so every other part found its state intact: the repair is not a blanket
    re-apply), and the host is as before."""
    assert run.changed_tasks('target') == [TOPOLOGY_TASK], run.output
    assert run.changed_parts('target') == parts, run.output
    assert role_lab.normalized(lab.snapshot()) == lab.reference


def test_flushed_nat_rules_are_restored(drift):
    table = [line for line in harness.rulesets(drift.host)['nft'] if 'lnt:' in line]
    assert table, 'the role put no rule in the nft table'
    harness.nsexec(drift.host, ['nft', 'flush', 'table', 'inet', 'linuxnet_netns'])
    # no rule is left (the elements of the sets stay: a flush of the table empties its chains)
    assert not [line for line in harness.rulesets(drift.host)['nft'] if 'comment "lnt' in line and 'elements' not in line
                and not line.startswith('\t\t\t')]
    assert_restored(drift, rerun(drift), ['nat_rule'])


def test_deleted_veth_is_restored(drift):
    """Deleting the host end deletes the inner end too, and with it the inner default route."""
    harness.sh(['ip', '-n', drift.host, 'link', 'del', 'veth1'])
    assert 'veth2' not in harness.links(drift.first)
    assert not [r for r in harness.routes(drift.first) if r.startswith('default')]
    assert_restored(drift, rerun(drift), ['veth', 'netns_route'])


def test_deleted_route_is_restored(drift):
    harness.sh(['ip', '-n', drift.second, 'route', 'del', 'default'])
    assert_restored(drift, rerun(drift), ['netns_route'])


def test_namespace_deleted_by_hand_is_recreated(drift):
    """Real behaviour first: with no process left in it, deleting an inner namespace
    destroys it, its veth end and therefore the peer on the host as well; nothing is left
    half-made. The next run creates namespace, pair and route again."""
    harness.delete_netns(drift.second)
    assert harness.wait_for(lambda: 'veth3' not in harness.links(drift.host), timeout=10.0), harness.links(drift.host)
    assert_restored(drift, rerun(drift), ['netns', 'veth', 'netns_route'])


def test_namespace_deleted_while_a_process_keeps_it_is_repaired(drift):
    """A process still runs in the namespace: deleting its name leaves the namespace alive,
    and the host-side veth with it, its peer in a namespace nobody can name. The next run
    must replace that pair by one into the new namespace of that name."""
    keeper = subprocess.Popen(['ip', 'netns', 'exec', drift.first, 'sleep', '300'])
    try:
        assert harness.wait_for(lambda: harness.sh(['ip', 'netns', 'pids', drift.first], check=False).strip(), timeout=10.0)
        harness.delete_netns(drift.first)
        time.sleep(0.5)
        assert drift.first not in harness.list_netns()
        assert 'veth1' in harness.links(drift.host)  # the half that is left
        run = drift.run(drift.variables)
        assert run.rc == 0, run.output
        assert role_lab.normalized(drift.snapshot()) == drift.reference
    finally:
        # The last test on this lab (file order): no repair run, just let the orphan go.
        harness.sh(['ip', '-n', drift.host, 'link', 'del', 'veth1'], check=False)
        keeper.kill()
        keeper.wait()


def test_flushed_iptables_nat_table_is_restored_by_nat_rule(netns):
    """The same drift on the iptables backend, for the module alone: iptables -t nat -F
    removes our jumps and rules (and a foreign rule); the next call puts back ours, only."""
    ns = netns('di')
    rules = {'namespace': ns, 'backend': 'iptables', 'rules': [
        {'kind': 'masquerade', 'source': '192.168.45.0/24', 'out_interface': 'eth0'},
        {'kind': 'dnat', 'protocol': 'tcp', 'port': 8080, 'to_address': '192.168.45.3', 'to_port': 80}]}
    first = harness.run_module('nat_rule', rules)
    assert not first.get('failed') and first['changed'], first
    reference = harness.rulesets(ns)
    harness.nsexec(ns, ['iptables', '-w', '-t', 'nat', '-A', 'POSTROUTING', '-s', '10.81.0.0/16', '-j', 'MASQUERADE'])
    harness.nsexec(ns, ['iptables', '-w', '-t', 'nat', '-F'])
    second = harness.run_module('nat_rule', rules)
    assert not second.get('failed') and second['changed'], second
    assert all(' nat: ' in line for line in second['rules_added']), second['rules_added']
    assert harness.rulesets(ns) == reference
    third = harness.run_module('nat_rule', rules)
    assert not third['changed'], third


# --- two runs at the same time ----------------------------------------------------------------

def test_two_runs_at_once_end_correct_without_duplicates(tmp_path):
    """The host's rules are in iptables-legacy (a foreign rule there), so nat_rule writes with
    iptables-legacy-restore -w. Both runs get their environment's XTABLES_LOCKFILE, held here
    until both nat_rule calls wait on it, or 6 s after the first does (with the modules'
    own lock the second waits on that one instead; the modules wait 10 s for the xtables
    lock, then fail with a reason): the two runs overlap at their most
    sensitive point every time instead of by chance. Before the modules took a lock, both
    appended every jump to our chains twice, and veth/netns_route failed with EEXIST."""
    lab = role_lab.RoleLab(tmp_path, tag='c')
    lockfile = str(tmp_path / 'xtables.lock')
    try:
        harness.nsexec(lab.host, ['iptables-legacy', '-w', '-t', 'nat', '-A', 'POSTROUTING', '-s', '10.82.0.0/16',
                                  '-j', 'MASQUERADE'])
        first, second, variables = two_namespaces(lab, netns_nat_backend='iptables')
        vars_file = lab.write_vars(variables)
        env = {'XTABLES_LOCKFILE': lockfile}
        fd = os.open(lockfile, os.O_CREAT | os.O_RDWR, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX)
        runs = []
        try:
            def finished():
                return all(proc.poll() is not None for proc, dummy, dummy2 in runs)

            for index in range(2):
                path = str(tmp_path / ('run%d.log' % index))
                runs.append(role_lab.start_playbook(lab.inventory, lab.workdir, vars_file, env=env, stdout_path=path)
                            + (path,))
            harness.wait_for(lambda: harness.legacy_restore_processes(lab.host, lockfile) or finished(), timeout=180)
            harness.wait_for(lambda: len(harness.legacy_restore_processes(lab.host, lockfile)) >= 2 or finished(), timeout=6)
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)
        results = [role_lab.finish_playbook(proc, argv, path) for proc, argv, path in runs]
        for run in results:
            assert run.rc == 0 and run.recap('target')['failed'] == 0, run.output
        rules = [line for line in harness.nsexec(lab.host, ['iptables-legacy-save']).splitlines()
                 if line.startswith('-A')]
        assert len(rules) == len(set(rules)), rules
        for ns in (first, second):
            assert [r for r in harness.routes(ns) if r.startswith('default')], harness.routes(ns)
        # The correct state: a third run finds nothing to do.
        third = lab.run(variables)
        assert third.rc == 0 and third.recap('target')['changed'] == 0, third.output
    finally:
        lab.close()


def test_a_stuck_xtables_lock_fails_the_run_after_a_bounded_wait_and_changes_no_rule(tmp_path):
    """Someone holds the xtables lock of iptables-legacy and never lets go: the run fails
    after the modules' 10 s wait with a message naming the lock, instead of hanging for
    minutes with the collection's host lock held, and no rule of ours was written."""
    lab = role_lab.RoleLab(tmp_path, tag='x')
    lockfile = str(tmp_path / 'xtables.lock')
    try:
        harness.nsexec(lab.host, ['iptables-legacy', '-w', '-t', 'nat', '-A', 'POSTROUTING', '-s', '10.82.0.0/16',
                                  '-j', 'MASQUERADE'])
        first, second, variables = two_namespaces(lab, netns_nat_backend='iptables')
        before = harness.nsexec(lab.host, ['iptables-legacy-save'])
        fd = os.open(lockfile, os.O_CREAT | os.O_RDWR, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            started = time.time()
            run = lab.run(variables, env={'XTABLES_LOCKFILE': lockfile})
            took = time.time() - started
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)
        failure = run.failure('target')
        assert run.rc != 0 and failure is not None, run.output
        assert 'held the xtables lock' in failure['msg'] and '(10 s)' in failure['msg'], failure['msg']
        assert 10 <= took < 60, took
        saved = harness.nsexec(lab.host, ['iptables-legacy-save'])
        assert [line for line in saved.splitlines() if line.startswith('-A')] == \
            [line for line in before.splitlines() if line.startswith('-A')]
        # the namespaces the failed call had created were removed with it
        assert first not in harness.list_netns() and second not in harness.list_netns()
        again = lab.run(variables)
        assert again.rc == 0 and again.recap('target')['failed'] == 0, again.output
    finally:
        lab.close()
