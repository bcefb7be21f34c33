# SPDX-License-Identifier: GPL-3.0-or-later
"""Least privilege, check mode and clean removal of the netns_nat role (issue 6, security).

The article's lab: host (host1, eth0 192.168.1.32) and outside (host2, eth0 192.168.1.15)
wired by one veth; the role puts myspace (192.168.45.3) behind host with 8080/tcp -> :80.
host already holds an administrator's state the role must leave alone: FORWARD policy DROP
(the article's step 9 premise), a foreign FORWARD rule, a foreign NAT rule, a foreign nft
table and a foreign route. outside gets a route to 192.168.45.0/24 via host, so it could
reach every port of myspace if forwarding let it.

- Default (scoped) forward mode: outside reaches the published port (8080 -> myspace:80),
  but opens no connection to an unpublished port of myspace (2222), nor to myspace:80
  directly: only DNAT'ed flows are forwarded inwards.
- The article's literal mode (forward_mode: both, ACCEPT everything between eth0 and veth1
  both ways): outside reaches every port of myspace through its route.
- Check mode changes nothing, on a fresh host, on an applied host asked for a change, and
  for state absent.
- state: absent leaves no namespace, link, address, route, rule, chain, table or sysctl
  change of ours, and the foreign state exactly as it was.

The tests run in file order on one lab, each from the state the previous one left; a
test that finds another state first brings the lab to the one it needs."""
import os
import time

import pytest

from tests.support import harness
from tests.support import role_lab
from tests.support import traffic

pytestmark = pytest.mark.controller_only

MYSPACE, HOST, OUTSIDE = '192.168.45.3', role_lab.RoleLab.HOST_ADDRESS, role_lab.RoleLab.OUTSIDE_ADDRESS
PUBLISHED, TARGET, UNPUBLISHED = 8080, 80, 2222


class SecurityLab(role_lab.RoleLab):
    def __init__(self, workdir):
        super(SecurityLab, self).__init__(workdir, tag='s')
        self.myspace = self.inner_name('sm')
        self.state = 'fresh'
        # The administrator's state, made before the role ever runs.
        for argv in (['iptables', '-w', '-P', 'FORWARD', 'DROP'],
                     ['iptables', '-w', '-A', 'FORWARD', '-s', '198.51.100.0/24', '-j', 'DROP'],
                     ['iptables', '-w', '-t', 'nat', '-A', 'POSTROUTING', '-s', '10.200.0.0/16', '-o', 'eth0',
                      '-j', 'MASQUERADE'],
                     ['nft', 'add', 'table', 'inet', 'admin'],
                     ['nft', 'add', 'set', 'inet', 'admin', 'blocked', '{ type ipv4_addr; }'],
                     ['ip', 'route', 'add', '10.123.0.0/16', 'via', OUTSIDE]):
            harness.nsexec(self.host, argv)
        harness.sh(['ip', '-n', self.outside, 'route', 'add', '192.168.45.0/24', 'via', HOST])
        self.pristine = self.snapshot()

    def variables(self, mode=None):
        variables = {
            'netns_nat_egress_interface': 'eth0',
            'netns_nat_namespaces': [{
                'name': self.myspace, 'host_interface': 'veth1', 'host_address': '192.168.45.2/24',
                'inner_interface': 'veth2', 'inner_address': MYSPACE + '/24',
                'port_forwards': [{'protocol': 'tcp', 'published_port': PUBLISHED, 'target_port': TARGET}]}]}
        if mode:
            variables['netns_nat_forward_mode'] = mode
        return variables

    def apply(self, mode):
        """The role applied with forward mode ``mode`` (None: the default)."""
        if self.state != (mode or 'scoped'):
            run = self.run(self.variables(mode))
            assert run.rc == 0 and run.recap('target')['failed'] == 0, run.output
            self.state = mode or 'scoped'

    def connect(self, address, port, timeout=1.5):
        """What outside gets when it connects to address:port ("myspace <peer>" or "unreachable")."""
        return traffic.connect(self.outside, address, port, timeout)

    def listening(self):
        return traffic.start_listener(self.myspace, 'myspace', [TARGET, UNPUBLISHED])


@pytest.fixture(scope='module')
def lab(tmp_path_factory):
    built = SecurityLab(tmp_path_factory.mktemp('security'))
    try:
        yield built
    finally:
        built.close()


@pytest.fixture
def listener(lab):
    if lab.state == 'fresh':
        lab.apply(None)
    proc = lab.listening()
    yield proc
    proc.kill()
    proc.wait()


def test_check_mode_on_a_fresh_host_changes_nothing(lab):
    assert lab.state == 'fresh'
    run = lab.run(lab.variables(), check=True)
    assert run.rc == 0, run.output
    assert run.recap('target')['changed'] > 0  # it would change things ...
    assert lab.snapshot() == lab.pristine     # ... and changed none of them
    assert not os.path.exists(harness.forwarding_record(lab.host))


def test_scoped_mode_forwards_only_the_published_port(lab, listener):
    lab.apply(None)
    assert lab.connect(HOST, PUBLISHED) == 'myspace %s' % OUTSIDE  # DNAT into myspace, source kept
    assert lab.connect(MYSPACE, UNPUBLISHED).startswith('unreachable')
    assert lab.connect(MYSPACE, TARGET).startswith('unreachable')  # the target, but not DNAT'ed
    assert listener.poll() is None


def test_check_mode_on_an_applied_host_changes_nothing(lab):
    lab.apply(None)
    before = lab.snapshot()
    run = lab.run(lab.variables('both'), check=True)
    assert run.rc == 0, run.output
    assert 'nat_rule' in run.changed_parts('target'), run.output  # the rules would move ...
    assert lab.snapshot() == before                             # ... and did not


def test_literal_mode_forwards_every_port(lab, listener):
    lab.apply('both')
    assert lab.connect(HOST, PUBLISHED) == 'myspace %s' % OUTSIDE
    assert lab.connect(MYSPACE, UNPUBLISHED) == 'myspace %s' % OUTSIDE
    assert lab.connect(MYSPACE, TARGET) == 'myspace %s' % OUTSIDE


def test_check_mode_of_absent_changes_nothing(lab):
    if lab.state == 'fresh':
        lab.apply(None)
    before = lab.snapshot()
    run = lab.run(lab.variables(lab.state if lab.state == 'both' else None), check=True, state='absent')
    assert run.rc == 0, run.output
    assert run.recap('target')['changed'] > 0
    assert lab.snapshot() == before
    assert os.path.exists(harness.forwarding_record(lab.host))


def test_absent_leaves_exactly_the_foreign_state(lab):
    if lab.state == 'fresh':
        lab.apply(None)
    assert lab.myspace in harness.list_netns() and os.path.exists(harness.forwarding_record(lab.host))
    run = lab.run(lab.variables(lab.state if lab.state == 'both' else None), state='absent')
    assert run.rc == 0 and run.recap('target')['failed'] == 0, run.output
    lab.state = 'fresh'
    time.sleep(0.2)
    after = lab.snapshot()
    # Exactly the state from before the role: no namespace, link, address, route, rule,
    # chain, table or forwarding sysctl of ours; every foreign item as it was.
    assert after == lab.pristine
    assert lab.myspace not in harness.list_netns()
    assert not os.path.exists(harness.forwarding_record(lab.host))
    rules = after[lab.host]['rulesets']
    assert ':FORWARD DROP' in rules['iptables-save']
    assert not [line for line in rules['iptables-save'] + rules['nft'] if 'lnt' in line.lower()]
