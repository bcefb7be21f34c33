# SPDX-License-Identifier: GPL-3.0-or-later
"""Isolation by default and coexistence with other firewall managers (the netns_nat role).

The article's lab (tests/support/role_lab.RoleLab): host (192.168.1.32) and outside
(192.168.1.15). outside routes the inner subnets via host, so it could reach any inner port
if forwarding let it. The role puts a (10.91.1.0/24, 8080 -> :80) and b (10.91.2.0/24,
8081 -> :80) behind host, forward mode scoped.

- Under a FORWARD policy of ACCEPT and of DROP, on both backends: the published ports
  answer, no unpublished port of a namespace can be reached directly (from outside or from
  the other namespace), a namespace's traffic out is masqueraded; reachable_from opens one
  namespace to another; absent gives back the host as it was.
- A Docker-like workload on host (its own FORWARD rules behind DOCKER-USER, policy DROP, its
  own MASQUERADE) keeps forwarding before, during and after the role with forward_policy
  drop, on both backends; an administrator's DROP in DOCKER-USER or in the collection's
  admin chain LNT-USER still stops a published flow.
- Bad input of the kinds a security tester tried is refused before any change.
- The connection plugin keeps a task's mounts away from a controller whose / is shared."""
import json
import os
import subprocess

import pytest

from tests.support import harness
from tests.support import role_lab
from tests.support import traffic

pytestmark = pytest.mark.controller_only

HOST, OUTSIDE = role_lab.RoleLab.HOST_ADDRESS, role_lab.RoleLab.OUTSIDE_ADDRESS
A_INNER, B_INNER = '10.91.1.2', '10.91.2.2'
UNPUBLISHED = 2222
WHOAMI = 7000


def inner(name, host_interface, net, published, **extra):
    entry = {'name': name, 'host_interface': host_interface, 'host_address': '10.91.%d.1/24' % net,
             'inner_interface': 'eth0', 'inner_address': '10.91.%d.2/24' % net,
             'port_forwards': [{'protocol': 'tcp', 'published_port': published, 'target_port': 80}]}
    entry.update(extra)
    return entry


class IsolationLab(role_lab.RoleLab):
    def __init__(self, workdir, policy='ACCEPT'):
        super(IsolationLab, self).__init__(workdir, tag='i')
        self.a, self.b = self.inner_name('a'), self.inner_name('b')
        if policy != 'ACCEPT':
            harness.nsexec(self.host, ['iptables', '-w', '-P', 'FORWARD', policy])
        harness.sh(['ip', '-n', self.outside, 'route', 'add', '10.91.0.0/16', 'via', HOST])
        self.listeners = []
        self.pristine = self.snapshot()

    def variables(self, backend, b_extra=None, **extra):
        variables = {'netns_nat_backend': backend, 'netns_nat_namespaces': [
            inner(self.a, 'ia', 1, 8080), inner(self.b, 'ib', 2, 8081, **(b_extra or {}))]}
        variables.update(extra)
        return variables

    def apply(self, variables, state=None):
        run = self.run(variables, state=state)
        assert run.rc == 0 and run.recap('target')['failed'] == 0, run.output
        return run

    def listen(self):
        self.listeners = [traffic.start_listener(self.a, 'a', [80, UNPUBLISHED]),
                          traffic.start_listener(self.b, 'b', [80, UNPUBLISHED]),
                          traffic.start_listener(self.outside, 'outside', [WHOAMI])]

    def close(self):
        for proc in self.listeners:
            traffic.stop(proc)
        super(IsolationLab, self).close()


def blocked(answer):
    return answer.startswith('unreachable')


@pytest.mark.parametrize('policy', ['ACCEPT', 'DROP'])
@pytest.mark.parametrize('backend', ['iptables', 'nftables'])
def test_only_published_ports_reach_a_namespace_whatever_the_forward_policy(tmp_path, backend, policy):
    lab = IsolationLab(tmp_path, policy)
    try:
        lab.apply(lab.variables(backend))
        lab.listen()
        # published: from outside, and from the other namespace through the host's address
        assert traffic.connect(lab.outside, HOST, 8080) == 'a %s' % OUTSIDE
        assert traffic.connect(lab.outside, HOST, 8081) == 'b %s' % OUTSIDE
        assert traffic.connect(lab.a, HOST, 8081) == 'b %s' % A_INNER
        # unpublished, routed directly: from outside to any port, from one namespace to the other
        for answer in (traffic.connect(lab.outside, A_INNER, UNPUBLISHED, timeout=0.7),
                       traffic.connect(lab.outside, A_INNER, 80, timeout=0.7),
                       traffic.connect(lab.a, B_INNER, UNPUBLISHED, timeout=0.7),
                       traffic.connect(lab.b, A_INNER, 80, timeout=0.7)):
            assert blocked(answer), answer
        # out: masqueraded to the host's address
        assert traffic.connect(lab.a, OUTSIDE, WHOAMI) == 'outside %s' % HOST
        assert traffic.connect(lab.b, OUTSIDE, WHOAMI) == 'outside %s' % HOST

        # reachable_from: b lets a in directly; outside still is not
        lab.apply(lab.variables(backend, b_extra={'reachable_from': [lab.a]}))
        assert traffic.connect(lab.a, B_INNER, UNPUBLISHED) == 'b %s' % A_INNER
        assert blocked(traffic.connect(lab.outside, B_INNER, UNPUBLISHED, timeout=0.7))
        assert blocked(traffic.connect(lab.b, A_INNER, UNPUBLISHED, timeout=0.7))
        for proc in lab.listeners:
            traffic.stop(proc)
        lab.listeners = []
        lab.apply(lab.variables(backend), state='absent')
        assert lab.snapshot() == lab.pristine
    finally:
        lab.close()


class DockerLikeLab(IsolationLab):
    """host also runs a Docker-like workload: namespace dock behind dk0 (172.30.0.0/24), its
    FORWARD accepts behind a DOCKER-USER jump, FORWARD policy DROP and its own MASQUERADE."""

    def __init__(self, workdir):
        role_lab.RoleLab.__init__(self, workdir, tag='d')
        self.a, self.b = self.inner_name('a'), self.inner_name('b')
        self.dock = self.inner_name('k')
        harness.sh(['ip', 'netns', 'add', self.dock])
        harness.sh(['ip', '-n', self.host, 'link', 'add', 'dk0', 'type', 'veth', 'peer', 'name', 'eth0',
                    'netns', self.dock])
        for ns, ifname, address in ((self.host, 'dk0', '172.30.0.1/24'), (self.dock, 'eth0', '172.30.0.2/24')):
            harness.sh(['ip', '-n', ns, 'addr', 'add', address, 'dev', ifname])
            harness.sh(['ip', '-n', ns, 'link', 'set', ifname, 'up'])
        harness.sh(['ip', '-n', self.dock, 'link', 'set', 'lo', 'up'])
        harness.sh(['ip', '-n', self.dock, 'route', 'add', 'default', 'via', '172.30.0.1'])
        harness.nsexec(self.host, ['sysctl', '-qw', 'net.ipv4.ip_forward=1'])
        harness.nsexec(self.host, ['iptables-restore', '--noflush'], input=(
            '*filter\n:FORWARD DROP [0:0]\n:DOCKER-USER - [0:0]\n-A DOCKER-USER -j RETURN\n'
            '-A FORWARD -j DOCKER-USER\n-A FORWARD -i dk0 -o eth0 -j ACCEPT\n'
            '-A FORWARD -o dk0 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT\nCOMMIT\n'
            '*nat\n-A POSTROUTING -s 172.30.0.0/24 -o eth0 -j MASQUERADE\nCOMMIT\n'))
        harness.sh(['ip', '-n', self.outside, 'route', 'add', '10.91.0.0/16', 'via', HOST])
        self.listeners = [traffic.start_listener(self.outside, 'outside', [WHOAMI])]
        self.pristine = self.snapshot()

    def docker_works(self):
        return traffic.connect(self.dock, OUTSIDE, WHOAMI) == 'outside %s' % HOST


@pytest.mark.parametrize('backend', ['iptables', 'nftables'])
def test_a_docker_like_workload_keeps_forwarding_and_admin_drops_still_apply(tmp_path, backend):
    lab = DockerLikeLab(tmp_path)
    try:
        assert lab.docker_works()
        variables = lab.variables(backend, netns_nat_forward_policy='drop')
        lab.apply(variables)
        lab.listeners.append(traffic.start_listener(lab.a, 'a', [80]))
        assert lab.docker_works()
        assert traffic.connect(lab.outside, HOST, 8080) == 'a %s' % OUTSIDE
        assert blocked(traffic.connect(lab.outside, A_INNER, 80, timeout=0.7))
        forward = [line for line in harness.nsexec(lab.host, ['iptables', '-S', 'FORWARD']).splitlines()
                   if line.startswith('-A FORWARD')]
        # DOCKER-USER first, then the administrator's chain of the collection, then ours
        assert forward[:3] == ['-A FORWARD -j DOCKER-USER',
                               '-A FORWARD -m comment --comment "lnt:user" -j LNT-USER',
                               '-A FORWARD -m comment --comment "lnt:jump" -j LNT-FORWARD'], forward
        assert lab.apply(variables).recap('target')['changed'] == 0
        # an administrator's DROP decides before the collection's accepts, in either chain
        for chain in ('DOCKER-USER', 'LNT-USER'):
            harness.nsexec(lab.host, ['iptables', '-w', '-I', chain, '-s', OUTSIDE, '-j', 'DROP'])
            assert blocked(traffic.connect(lab.outside, HOST, 8080, timeout=0.7)), chain
            harness.nsexec(lab.host, ['iptables', '-w', '-D', chain, '-s', OUTSIDE, '-j', 'DROP'])
            assert traffic.connect(lab.outside, HOST, 8080) == 'a %s' % OUTSIDE
        assert lab.apply(variables).recap('target')['changed'] == 0
        lab.apply(variables, state='absent')
        assert lab.docker_works()
        for proc in lab.listeners[1:]:
            traffic.stop(proc)
        del lab.listeners[1:]
        assert role_lab.normalized(lab.snapshot()) == role_lab.normalized(lab.pristine)
    finally:
        lab.close()


def test_the_nft_table_never_drops_by_policy_and_ip6_is_left_alone(tmp_path):
    """forward_policy means the host's iptables FORWARD policy on both backends, for the
    families of the rules: no drop policy in our nft table, no ip6 filter for an IPv4 role."""
    lab = IsolationLab(tmp_path)
    try:
        lab.apply(lab.variables('nftables', netns_nat_forward_policy='drop'))
        rules = harness.rulesets(lab.host)
        start = rules['nft'].index('table inet linuxnet_netns {')
        ours = rules['nft'][start:rules['nft'].index('}', start)]
        assert any('type filter hook forward' in line for line in ours)
        assert not any('policy drop' in line for line in ours), ours
        assert ':FORWARD DROP' in rules['iptables-save'] and rules['ip6tables-save'] == []
        lab.apply(lab.variables('nftables'), state='absent')
        assert lab.snapshot() == lab.pristine
    finally:
        lab.close()


# --- bad input -----------------------------------------------------------------------------------

def bad_cases(lab):
    """name -> (role variables, words the failure must contain)."""
    good = inner(lab.a, 'ia', 1, 8080)
    return {
        'newline in a namespace name': ({'netns_nat_namespaces': [dict(good, name=lab.a + '\n')]},
                                        'a namespace name is 1 to 64'),
        'newline in the egress interface': ({'netns_nat_namespaces': [dict(good, egress_interface='eth0\n')]},
                                            'an interface name is 1 to 15'),
        'broadcast target': ({'netns_nat_namespaces': [dict(good, port_forwards=[
            {'published_port': 8080, 'target_address': '255.255.255.255'}])]}, 'is outside the subnet'),
        'subnet of the host': ({'netns_nat_namespaces': [dict(good, host_address='192.168.1.1/28',
                                                              inner_address='192.168.1.2/28')]},
                               "overlaps 192.168.1.0/24 of the host's interface eth0"),
        'missing egress interface': ({'netns_nat_namespaces': [dict(good, egress_interface='nope0')]},
                                     'the egress interface nope0'),
        'snat address not on the host': ({'netns_nat_namespaces': [dict(good, source_nat='snat',
                                                                        snat_address='192.168.1.99')]},
                                         'is not an address of the host'),
        'typo in a role variable': ({'netns_nat_namespace': [good]}, 'unknown variables netns_nat_namespace'),
    }


def test_bad_input_is_refused_before_any_change(tmp_path):
    lab = IsolationLab(tmp_path)
    try:
        for case, (variables, words) in sorted(bad_cases(lab).items()):
            run = lab.run(variables)
            failure = run.failure('target')
            assert run.rc != 0 and failure is not None, (case, run.output)
            assert words in json.dumps(failure).replace('\\"', '"'), (case, failure)
            assert lab.snapshot() == lab.pristine, case
            assert not os.path.exists(harness.ownership_record(lab.host)), case
    finally:
        lab.close()


@pytest.mark.parametrize('args, words', [
    ({'addresses': ['fd00::9%x/64']}, 'scope id'),
    ({'addresses': ['10.92.0.1/24\n']}, 'whitespace'),
])
def test_modules_refuse_scope_ids_and_trailing_newlines(tmp_path, args, words):
    ns = harness.unique_name('bi')
    harness.sh(['ip', 'netns', 'add', ns])
    try:
        before = harness.snapshot(ns)
        result = harness.run_module('veth', dict({'name': 'bi0', 'peer': 'bi1'}, **args), netns=ns)
        assert result.get('failed') and words in result['msg'], result
        assert harness.snapshot(ns) == before
    finally:
        harness.delete_netns(ns)


# --- the connection plugin's mounts ----------------------------------------------------------------

SHARED_ROOT = r'''
set -e
mount --make-shared /
"$PLAYBOOK" -i "$INVENTORY" "$PLAY" >"$OUT" 2>&1 || { cat "$OUT"; exit 3; }
if mountpoint -q "$MARK"; then echo "the task's mount reached the controller"; exit 4; fi
test -e "/run/netns/$CREATED" || { echo "the namespace the task created is not visible"; exit 5; }
'''


def test_a_tasks_mounts_do_not_reach_a_controller_whose_root_is_shared(tmp_path):
    """In a mount namespace of its own whose / is shared (as under systemd), a task mounts a
    tmpfs and creates a namespace: the namespace shows up outside, the mount does not."""
    host, created = harness.unique_name('cm'), harness.unique_name('cn')
    harness.sh(['ip', 'netns', 'add', host])
    mark = str(tmp_path / 'mark')
    os.mkdir(mark)
    inventory = role_lab.write_inventory(tmp_path / 'inventory.json', {'target': {'ansible_netns_name': host}})
    play = tmp_path / 'play.yml'
    play.write_text(json.dumps([{'hosts': 'all', 'gather_facts': False, 'tasks': [
        {'ansible.builtin.command': {'argv': ['mount', '-t', 'tmpfs', 'none', mark]}},
        {'ansible.builtin.command': {'argv': ['ip', 'netns', 'add', created]}}]}]))
    env = role_lab.playbook_env(tmp_path, {'PLAYBOOK': role_lab.ansible_playbook_path(), 'INVENTORY': inventory,
                                           'PLAY': str(play), 'OUT': str(tmp_path / 'out.txt'), 'MARK': mark,
                                           'CREATED': created})
    try:
        proc = subprocess.run(['unshare', '--mount', '--propagation', 'unchanged', 'sh', '-c', SHARED_ROOT],
                              cwd=str(tmp_path), env=env, capture_output=True, text=True, timeout=120, check=False)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert created in harness.list_netns()
    finally:
        harness.delete_netns(created)
        harness.delete_netns(host)
