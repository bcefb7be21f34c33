# SPDX-License-Identifier: GPL-3.0-or-later
"""The netns_nat role's ownership record, through real ansible-playbook runs.

The role keeps, on the managed host, a record of what it created (netns_nat_state_dir,
one file per host named after the host's netns cookie). With it:

- a desired namespace (or host-side link) that exists and that the role did not create is
  refused before any change, unless the namespace is adopted; an adopted namespace is
  managed (veth pair, route, rules, published ports) and never deleted, neither when it
  leaves the list nor with state absent;
- a namespace that leaves the list goes with its pair and rules and nothing else goes;
  the empty list (or state absent) puts the host back exactly as it was: forwarding
  sysctls (ip_forward and every per-interface value the ip_forward write overwrote), the
  FORWARD policies of both families, the firewall tables;
- a switch of NAT backend moves our rules to the new backend only, and the published
  port keeps working;
- a namespace deleted and made again by hand under the same name is not the one the
  record names: it is neither deleted nor taken over.

Every host is a namespace of this machine (tests/support/role_lab.RoleLab: lab.host with
eth0 192.168.1.32 wired to lab.outside 192.168.1.15); every namespace is made here with a
unique name and removed by lab.close(). Traffic goes from lab.outside to a port published
on lab.host, answered by a listener inside the inner namespace."""
import os
import subprocess

import pytest

from tests.support import harness
from tests.support import role_lab
from tests.support import traffic

pytestmark = pytest.mark.controller_only

HOST, OUTSIDE = role_lab.RoleLab.HOST_ADDRESS, role_lab.RoleLab.OUTSIDE_ADDRESS
REFUSED = 'already exists and was not created by linuxnet.netns'
LINK_REFUSED = 'interface %s already exists on the host and was not created by linuxnet.netns'
BACKENDS = ('iptables', 'nftables')
TOPOLOGY_TASK = 'Build the topology (article steps 1-9, section 2.3)'


# --- helpers (local to this file) ---------------------------------------------------------------


def entry(name, index, host_if, inner_if, published=None, adopt=False):
    """A namespace entry on 10.<index>.0.0/24 (host .1, inner .2); ``published``: a TCP port
    on the host forwarded to port 80 inside."""
    item = {'name': name, 'host_interface': host_if, 'host_address': '10.%d.0.1/24' % index,
            'inner_interface': inner_if, 'inner_address': '10.%d.0.2/24' % index}
    if published:
        item['port_forwards'] = [{'protocol': 'tcp', 'published_port': published, 'target_port': 80}]
    if adopt:
        item['adopt'] = True
    return item


def variables(backend, namespaces, **extra):
    result = {'netns_nat_egress_interface': 'eth0', 'netns_nat_backend': backend,
              'netns_nat_namespaces': namespaces}
    result.update(extra)
    return result


def applied(lab, variables_, state=None):
    run = lab.run(variables_, state=state)
    assert run.rc == 0 and run.recap('target')['failed'] == 0, run.output
    return run


def refused(lab, variables_, names, phrase=REFUSED):
    """The run fails in the topology task with the ownership message (``phrase``) naming
    ``names``."""
    run = lab.run(variables_)
    assert run.rc != 0, run.output
    failure = run.failure('target')
    assert failure is not None, run.output
    assert failure['_task'] == TOPOLOGY_TASK, run.output
    assert phrase in failure.get('msg', ''), run.output
    for name in names:
        assert name in failure.get('msg', ''), run.output
    return failure


def foreign_namespace(lab, tag, marker_index):
    """A namespace made by hand (not by the role), with links keep0 (10.<marker>.0.1/24) and
    keep1 up inside it as the administrator's state; its name is removed by lab.close()."""
    name = lab.inner_name(tag)
    make_foreign(name, marker_index)
    return name


def make_foreign(name, marker_index):
    harness.sh(['ip', 'netns', 'add', name])
    harness.sh(['ip', '-n', name, 'link', 'set', 'lo', 'up'])
    # A veth pair with both ends inside (this kernel has no dummy links).
    harness.sh(['ip', '-n', name, 'link', 'add', 'keep0', 'type', 'veth', 'peer', 'name', 'keep1'])
    harness.sh(['ip', '-n', name, 'addr', 'add', '10.%d.0.1/24' % marker_index, 'dev', 'keep0'])
    for ifname in ('keep0', 'keep1'):
        harness.sh(['ip', '-n', name, 'link', 'set', ifname, 'up'])


def rules_text(ns):
    """iptables-save, ip6tables-save and the nft ruleset of ``ns`` as one list of lines."""
    sets = harness.rulesets(ns)
    return sets['iptables-save'] + sets['ip6tables-save'] + sets['nft']


def mentions(lines, subnet_prefix):
    return [line for line in lines if subnet_prefix in line]


def forward_policy_lines(ns):
    sets = harness.rulesets(ns)
    return ([line for line in sets['iptables-save'] if line.startswith(':FORWARD ')],
            [line for line in sets['ip6tables-save'] if line.startswith(':FORWARD ')])


def nft_table(ns):
    """`nft list table inet linuxnet_netns` in ``ns``: (returncode, output)."""
    proc = subprocess.run(['ip', 'netns', 'exec', ns, 'nft', 'list', 'table', 'inet', 'linuxnet_netns'],
                          capture_output=True, text=True, env=harness.ENV, check=False)
    return proc.returncode, proc.stdout + proc.stderr


def assert_only_in(lab, backend):
    """Our rules exist in ``backend`` and nowhere else."""
    sets = harness.rulesets(lab.host)
    ipt = sets['iptables-save'] + sets['ip6tables-save']
    ipt_ours = [line for line in ipt if 'LNT-' in line or 'lnt:' in line]
    rc, table = nft_table(lab.host)
    if backend == 'nftables':
        assert not ipt_ours, '\n'.join(ipt)
        assert rc == 0 and 'lnt:' in table, table
    else:
        assert ipt_ours, '\n'.join(ipt)
        assert rc != 0, 'our nft table is still there after moving to iptables:\n%s' % table


def connect(lab, address, port, timeout=1.5):
    """What lab.outside gets when it connects to address:port ("inner <peer>" or "unreachable: ...")."""
    return traffic.connect(lab.outside, address, port, timeout)


class listening(object):
    """A listener on port 80 inside namespace ``ns`` (answering "inner <peer>") for a with block."""

    def __init__(self, ns, port=80):
        self.ns, self.port, self.proc = ns, port, None

    def __enter__(self):
        self.proc = traffic.start_listener(self.ns, 'inner', [self.port])
        return self.proc

    def __exit__(self, *exc):
        traffic.stop(self.proc)
        return False


def without(snapshot, names):
    """A snapshot without namespaces ``names`` (their entry and their name in _netns)."""
    result = dict((key, value) for key, value in snapshot.items() if key not in names)
    result['_netns'] = [name for name in snapshot['_netns'] if name not in names]
    return result


@pytest.fixture
def lab(tmp_path):
    built = role_lab.RoleLab(tmp_path, tag='o')
    try:
        yield built
    finally:
        built.close()


# --- refusal of foreign objects ----------------------------------------------------------------------

def test_foreign_namespace_and_foreign_host_link_are_refused_before_any_change(lab):
    """A namespace of the list that exists and was made by someone else stops the run before
    anything changes, even the namespace listed before it that does not exist yet; so does a
    host_interface name that is a foreign link on the host. No record is written."""
    foreign = foreign_namespace(lab, 'of', 91)
    new = lab.inner_name('on')
    harness.nsexec(lab.host, ['ip', 'link', 'add', 'veth5', 'type', 'veth', 'peer', 'name', 'keep5'])
    pristine = lab.snapshot()

    refused(lab, variables('auto', [entry(new, 31, 'veth1', 'veth2', published=8080),
                                    entry(foreign, 32, 'veth3', 'veth4')]), [foreign])
    role_lab.assert_same(lab.snapshot(), pristine)
    assert new not in harness.list_netns()
    assert not os.path.exists(harness.ownership_record(lab.host))

    refused(lab, variables('auto', [entry(new, 31, 'veth5', 'veth2', published=8080)]), ['veth5'],
            phrase=LINK_REFUSED % 'veth5')
    role_lab.assert_same(lab.snapshot(), pristine)
    assert not os.path.exists(harness.ownership_record(lab.host))


# --- adopted namespaces ---------------------------------------------------------------------------

@pytest.mark.parametrize('backend', BACKENDS)
def test_adopted_namespace_is_managed_and_never_deleted(lab, backend):
    """adopt: true on an existing namespace A (with links of its own): the role wires it
    (veth pair, default route, a published port that answers from outside, under the
    FORWARD policy drop the role set). A leaving the list: A stays, exactly as it was
    before the role (pair, route and its rules gone), B untouched. Adopted again, then
    state absent: A stays as it was, and the whole host (forwarding, FORWARD policies of
    both families, tables) is exactly as before the first run."""
    adopted = foreign_namespace(lab, 'oa', 92)
    owned = lab.inner_name('ob')
    # outside could reach the adopted namespace directly if forwarding let it.
    harness.sh(['ip', '-n', lab.outside, 'route', 'add', '10.41.0.0/24', 'via', HOST])
    pristine = lab.snapshot()
    only_b = [entry(owned, 42, 'veth3', 'veth4', published=8082)]
    wanted = variables(backend, [entry(adopted, 41, 'veth1', 'veth2', published=8080, adopt=True)] + only_b,
                       netns_nat_forward_policy='drop')

    applied(lab, wanted)
    assert 'veth2' in harness.links(adopted)
    assert '10.41.0.2/24' in harness.addresses(adopted)['veth2']
    routes = harness.routes(adopted)
    assert [r for r in routes if r.startswith('default via 10.41.0.1 dev veth2')], routes
    assert harness.sysctls(lab.host)['net/ipv4/ip_forward'] == '1'
    # forward_policy is the host's iptables FORWARD policy on both backends, for the families
    # of the rules (IPv4 here: ip6 is left alone); our nft table never drops by policy
    assert forward_policy_lines(lab.host) == ([':FORWARD DROP'], [])
    if backend == 'nftables':
        rc, table = nft_table(lab.host)
        assert rc == 0 and 'policy drop' not in table, table
    with listening(adopted):
        assert connect(lab, HOST, 8080) == 'inner %s' % OUTSIDE
        # Forwarded traffic other than the published port's is dropped by that policy.
        assert connect(lab, '10.41.0.2', 80).startswith('unreachable')
    with_b = lab.snapshot()

    # A leaves the list: it stays, without anything the role added; B does not move.
    run = applied(lab, variables(backend, only_b, netns_nat_forward_policy='drop'))
    assert run.recap('target')['changed'] > 0
    after = lab.snapshot()
    assert adopted in after['_netns']
    role_lab.assert_same({adopted: after[adopted]}, {adopted: pristine[adopted]})  # keep0/keep1 as they were, no veth2, no route
    role_lab.assert_same({owned: after[owned]}, {owned: with_b[owned]})
    assert not mentions(rules_text(lab.host), '10.41.0.'), rules_text(lab.host)
    assert mentions(rules_text(lab.host), '10.42.0.')
    assert harness.sysctls(lab.host)['net/ipv4/ip_forward'] == '1'

    # Adopted again, then state absent: A stays, everything else as before the first run.
    applied(lab, wanted)
    assert 'veth2' in harness.links(adopted)
    run = applied(lab, wanted, state='absent')
    assert run.recap('target')['changed'] > 0
    assert adopted in harness.list_netns() and owned not in harness.list_netns()
    after = lab.snapshot()
    role_lab.assert_same({adopted: after[adopted]}, {adopted: pristine[adopted]})
    role_lab.assert_same(after, pristine)
    assert not os.path.exists(harness.ownership_record(lab.host))


def test_foreign_host_link_is_accepted_when_its_namespace_is_adopted(lab):
    """The administrator's own veth pair veth1 (host) <-> veth2 (in a namespace he made):
    refused without adopt, managed with adopt (the published port answers through it),
    and neither the pair nor the namespace is deleted by state absent, which removes what
    the role added: route, rules, and the addresses it gave the pair."""
    adopted = foreign_namespace(lab, 'ol', 93)
    harness.sh(['ip', '-n', lab.host, 'link', 'add', 'veth1', 'type', 'veth', 'peer', 'name', 'veth2',
                'netns', adopted])
    harness.sh(['ip', '-n', lab.host, 'link', 'set', 'veth1', 'up'])
    harness.sh(['ip', '-n', adopted, 'link', 'set', 'veth2', 'up'])
    pristine = lab.snapshot()

    item = entry(adopted, 43, 'veth1', 'veth2', published=8080)
    refused(lab, variables('auto', [item]), [adopted])
    role_lab.assert_same(lab.snapshot(), pristine)

    wanted = variables('auto', [dict(item, adopt=True)])
    applied(lab, wanted)
    assert '10.43.0.1/24' in harness.addresses(lab.host)['veth1']
    with listening(adopted):
        assert connect(lab, HOST, 8080) == 'inner %s' % OUTSIDE

    applied(lab, wanted, state='absent')
    assert adopted in harness.list_netns()
    assert 'veth1' in harness.links(lab.host) and 'veth2' in harness.links(adopted)
    assert not [r for r in harness.routes(adopted) if r.startswith('default')], harness.routes(adopted)
    assert not mentions(rules_text(lab.host), '10.43.0.'), rules_text(lab.host)
    assert harness.sysctls(lab.host) == pristine[lab.host]['sysctls']
    assert not os.path.exists(harness.ownership_record(lab.host))
    # Last, the whole claim of absent ("puts the host back as it was"): the addresses the
    # role gave the administrator's pair (10.43.0.1/24 on veth1, 10.43.0.2/24 on veth2, with
    # their connected routes) are the role's and go too; the pair itself stays.
    role_lab.assert_same(lab.snapshot(), pristine)


# --- leaving the list, restoring the host -----------------------------------------------------------

@pytest.mark.parametrize('backend', BACKENDS)
def test_leaving_the_list_removes_exactly_that_namespace_and_empty_list_restores(lab, backend):
    """[B] then [B, C] then [B]: the last run leaves the host exactly as the first did
    (C, its pair and its rules gone; every byte of B, of the firewall and of the sysctls as
    before), forwarding still on. The empty list then puts the host back exactly as it was
    before the first run, FORWARD policies (set to drop by the role) and tables included."""
    b, c = lab.inner_name('ob'), lab.inner_name('oc')
    pristine = lab.snapshot()
    only_b = [entry(b, 52, 'veth3', 'veth4', published=8082)]
    extra = {'netns_nat_forward_policy': 'drop'}

    applied(lab, variables(backend, only_b, **extra))
    assert harness.sysctls(lab.host)['net/ipv4/ip_forward'] == '1'
    reference = lab.snapshot()

    applied(lab, variables(backend, only_b + [entry(c, 53, 'veth5', 'veth6', published=8083)], **extra))
    assert c in harness.list_netns() and 'veth5' in harness.links(lab.host)
    assert mentions(rules_text(lab.host), '10.53.0.')

    run = applied(lab, variables(backend, only_b, **extra))
    assert run.recap('target')['changed'] > 0
    assert c not in harness.list_netns() and 'veth5' not in harness.links(lab.host)
    assert not mentions(rules_text(lab.host), '10.53.0.'), rules_text(lab.host)
    assert harness.sysctls(lab.host)['net/ipv4/ip_forward'] == '1'
    role_lab.assert_same(lab.snapshot(), reference)

    applied(lab, variables(backend, [], **extra))
    assert b not in harness.list_netns()
    role_lab.assert_same(lab.snapshot(), pristine)
    assert not os.path.exists(harness.ownership_record(lab.host))


@pytest.mark.parametrize('backend', BACKENDS)
def test_absent_restores_forwarding_values_and_a_drop_policy_found_before(lab, backend):
    """The host starts with net.ipv4.conf.eth0.forwarding=1 while ip_forward=0, and its
    IPv4 FORWARD policy DROP (set by its administrator). The role turns ip_forward on (which
    overwrites every conf/*/forwarding) and, with forward policy accept, lets the published
    port through. state absent must give back ip_forward 0, eth0.forwarding 1 and FORWARD
    DROP: the host exactly as before."""
    harness.nsexec(lab.host, ['sysctl', '-qw', 'net.ipv4.conf.eth0.forwarding=1'])
    harness.nsexec(lab.host, ['iptables', '-w', '-P', 'FORWARD', 'DROP'])
    inner = lab.inner_name('or')
    pristine = lab.snapshot()
    assert pristine[lab.host]['sysctls']['net/ipv4/ip_forward'] == '0'
    assert pristine[lab.host]['sysctls']['net/ipv4/conf/eth0/forwarding'] == '1'
    assert forward_policy_lines(lab.host)[0] == [':FORWARD DROP']
    wanted = variables(backend, [entry(inner, 54, 'veth1', 'veth2', published=8080)],
                       netns_nat_forward_policy='accept')

    applied(lab, wanted)
    assert harness.sysctls(lab.host)['net/ipv4/ip_forward'] == '1'
    assert forward_policy_lines(lab.host)[0] != [':FORWARD DROP']
    with listening(inner):
        assert connect(lab, HOST, 8080) == 'inner %s' % OUTSIDE

    applied(lab, wanted, state='absent')
    after = lab.snapshot()
    assert after[lab.host]['sysctls']['net/ipv4/ip_forward'] == '0'
    assert after[lab.host]['sysctls']['net/ipv4/conf/eth0/forwarding'] == '1'
    assert forward_policy_lines(lab.host)[0] == [':FORWARD DROP']
    role_lab.assert_same(after, pristine)
    assert not os.path.exists(harness.ownership_record(lab.host))


# --- switching backends -------------------------------------------------------------------------------

@pytest.mark.parametrize('first,second', [('iptables', 'nftables'), ('nftables', 'iptables')])
def test_backend_switch_moves_the_rules_and_absent_restores(lab, first, second):
    """Applied with one backend, then with the other: our rules exist only in the new one,
    the published port answers from outside, a re-run changes nothing, and state absent
    leaves the host exactly as before the first run."""
    inner = lab.inner_name('os')
    pristine = lab.snapshot()
    namespaces = [entry(inner, 61, 'veth1', 'veth2', published=8080)]

    applied(lab, variables(first, namespaces))
    assert_only_in(lab, first)

    run = applied(lab, variables(second, namespaces))
    assert run.recap('target')['changed'] > 0
    assert_only_in(lab, second)
    with listening(inner):
        assert connect(lab, HOST, 8080) == 'inner %s' % OUTSIDE

    again = applied(lab, variables(second, namespaces))
    assert again.recap('target')['changed'] == 0, again.output
    assert_only_in(lab, second)

    applied(lab, variables(second, namespaces), state='absent')
    role_lab.assert_same(lab.snapshot(), pristine)
    assert not os.path.exists(harness.ownership_record(lab.host))


# --- a namespace of the same name is not the recorded one -------------------------------------------

def test_namespace_recreated_by_hand_is_neither_deleted_nor_taken_over(lab):
    """The role made X and K. X is deleted by hand and a new namespace named X made by hand
    (with state of its own): the record's X is gone, the new X is foreign. With X left out
    of the list the run removes our rules for X but not the new X; with X in the list the
    run is refused and nothing changes; state absent removes K and leaves the new X."""
    x, k = lab.inner_name('ox'), lab.inner_name('ok')
    pristine = lab.snapshot()
    keep_k = [entry(k, 72, 'veth3', 'veth4', published=8082)]
    with_x = [entry(x, 71, 'veth1', 'veth2', published=8081)] + keep_k
    applied(lab, variables('auto', with_x))
    assert x in harness.list_netns()

    harness.delete_netns(x)
    assert harness.wait_for(lambda: 'veth1' not in harness.links(lab.host), timeout=10.0)
    make_foreign(x, 95)
    foreign_state = lab.snapshot()[x]

    run = applied(lab, variables('auto', keep_k))
    assert x in harness.list_netns(), run.output
    role_lab.assert_same({x: lab.snapshot()[x]}, {x: foreign_state})
    assert not mentions(rules_text(lab.host), '10.71.0.'), rules_text(lab.host)
    assert mentions(rules_text(lab.host), '10.72.0.')

    before = lab.snapshot()
    refused(lab, variables('auto', with_x), [x])
    role_lab.assert_same(lab.snapshot(), before)

    applied(lab, variables('auto', keep_k), state='absent')
    after = lab.snapshot()
    assert x in harness.list_netns() and k not in harness.list_netns()
    role_lab.assert_same({x: after[x]}, {x: foreign_state})
    role_lab.assert_same(without(after, [x]), without(pristine, [x]))
    assert not os.path.exists(harness.ownership_record(lab.host))


# --- drift in what the role owns, and a record that outlives its host ------------------------------

def test_a_veth_end_renamed_by_hand_is_recreated_not_refused(lab):
    """Someone renames the host end of a pair the role made (ip link set veth1 name x): the role
    recognises the pair as its own (the peer in its namespace), recreates it under the listed
    name, and the host ends as after the first apply."""
    inner_ns = lab.inner_name('or')
    wanted = variables('auto', [entry(inner_ns, 44, 'veth1', 'veth2', published=8080)])
    applied(lab, wanted)
    built = role_lab.normalized(lab.snapshot())
    harness.nsexec(lab.host, ['ip', 'link', 'set', 'veth1', 'down'])
    harness.nsexec(lab.host, ['ip', 'link', 'set', 'veth1', 'name', 'renamed0'])
    preview = lab.run(wanted, check=True)
    assert preview.rc == 0 and preview.recap('target')['changed'] == 1, preview.output
    run = applied(lab, wanted)
    assert run.recap('target')['changed'] == 1
    assert 'renamed0' not in harness.links(lab.host)
    role_lab.assert_same(role_lab.normalized(lab.snapshot()), built)
    assert applied(lab, wanted).recap('target')['changed'] == 0
    applied(lab, wanted, state='absent')


def test_a_namespace_kept_alive_by_a_process_leaves_the_list_without_orphaning_its_pair(lab):
    """A process still runs in a namespace that leaves the list: the namespace loses its name but
    lives on, and would keep its veth pair. The role deletes that pair by name, so the next run
    that lists the namespace again builds it afresh instead of refusing its own old host end."""
    kept, other = lab.inner_name('ok'), lab.inner_name('oo')
    first = [entry(kept, 46, 'veth1', 'veth2', published=8080), entry(other, 47, 'veth3', 'veth4')]
    applied(lab, variables('auto', first))
    with listening(kept):
        applied(lab, variables('auto', first[1:]))
        assert kept not in harness.list_netns()
        assert 'veth1' not in harness.links(lab.host)
    run = applied(lab, variables('auto', first))
    assert run.recap('target')['changed'] > 0
    with listening(kept):
        assert connect(lab, role_lab.RoleLab.HOST_ADDRESS, 8080) == 'inner %s' % role_lab.RoleLab.OUTSIDE_ADDRESS
    applied(lab, variables('auto', first), state='absent')


def test_the_record_of_a_deleted_host_is_never_applied_to_a_later_one(tmp_path):
    """Host H1 gets namespace X and is then deleted without absent (its record stays). A new
    host namespace H2, which may well get H1's inode again, must not take that record for its
    own: a run on H2 with no namespaces leaves X alone and restores nothing of H1's."""
    for name in ('one', 'two'):
        os.makedirs(str(tmp_path / name))
    first = role_lab.RoleLab(tmp_path / 'one', tag='h')
    inner_ns = first.inner_name('ox')
    second = None
    first_record = first_forwarding = None
    try:
        applied(first, variables('auto', [entry(inner_ns, 45, 'veth1', 'veth2')]))
        first_record = harness.ownership_record(first.host)
        first_forwarding = harness.forwarding_record(first.host)
        assert os.path.exists(first_record)
        first_inode = os.stat('/run/netns/' + first.host).st_ino
        harness.delete_netns(first.host)  # without absent: the record of H1 stays behind
        second = role_lab.RoleLab(tmp_path / 'two', tag='h')
        assert harness.ownership_record(second.host) != first_record
        print('inode of H1 %d, of H2 %d' % (first_inode, os.stat('/run/netns/' + second.host).st_ino))
        run = applied(second, variables('auto', []))
        assert inner_ns in harness.list_netns(), 'the namespace of the other host was deleted'
        assert not os.path.exists(harness.ownership_record(second.host))
        assert run.recap('target')['changed'] == 0, run.output
    finally:
        for path in (first_record, first_forwarding):
            if path and os.path.exists(path):
                os.unlink(path)
        harness.delete_netns(inner_ns)
        first.close()
        if second is not None:
            second.close()
