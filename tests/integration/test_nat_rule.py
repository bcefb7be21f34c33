# SPDX-License-Identifier: GPL-3.0-or-later
"""nat_rule against real namespaces, real iptables/nft and real conntrack, with both
backends: the article's SNAT + DNAT topology (traffic, observed source, conntrack
tuples), idempotence, check mode, diff, purge, exact removal, coexistence with a
Docker-like ruleset under FORWARD DROP, UDP retargeting with and without conntrack
cleanup, hairpin and host-originated access, IPv6, the NodePort case, bad input."""
import os
import re
import subprocess
import sys
import tempfile
import time

import pytest

from ansible_collections.linuxnet.netns.plugins.module_utils import conntrack
from tests.support import harness
from tests.support.probe_lab import Lab

HOST1, HOST1_INNER, HOST2, MYSPACE = '192.168.1.32', '192.168.45.2', '192.168.1.15', '192.168.45.3'
HOST1_V6, HOST2_V6, HOST1_INNER_V6, MYSPACE_V6 = 'fd12:1::32', 'fd12:1::15', 'fd45:3::2', 'fd45:3::3'
INNER_NET = '192.168.45.0/24'


@pytest.fixture
def lab():
    built = Lab()
    yield built
    built.close()


def article(lab, ipv6=False):
    """host1 <-> host2 on 192.168.1.0/24 (eth0), host1 <-> myspace on 192.168.45.0/24
    (veth1/veth2); myspace's default route is host1; host2 has no route to the inner net."""
    lab.host1, lab.host2, lab.myspace = lab.namespace('h1'), lab.namespace('h2'), lab.namespace('ms')
    lab.veth(lab.host1, 'eth0', lab.host2, 'eth0')
    lab.veth(lab.host1, 'veth1', lab.myspace, 'veth2')
    for ns, ifname, cidr in ((lab.host1, 'eth0', HOST1 + '/24'), (lab.host2, 'eth0', HOST2 + '/24'),
                             (lab.host1, 'veth1', HOST1_INNER + '/24'), (lab.myspace, 'veth2', MYSPACE + '/24')):
        lab.address(ns, ifname, cidr)
    lab.route(lab.myspace, 'default', HOST1_INNER)
    lab.forwarding(lab.host1)
    if ipv6:
        for ns, ifname, cidr in ((lab.host1, 'eth0', HOST1_V6 + '/64'), (lab.host2, 'eth0', HOST2_V6 + '/64'),
                                 (lab.host1, 'veth1', HOST1_INNER_V6 + '/64'),
                                 (lab.myspace, 'veth2', MYSPACE_V6 + '/64')):
            lab.address(ns, ifname, cidr)
        lab.route(lab.myspace, 'default', HOST1_INNER_V6)
        harness.nsexec(lab.host1, ['sysctl', '-qw', 'net.ipv6.conf.all.forwarding=1'])
    return lab


def inner_namespace(lab, tag, host_if, host_cidr, inner_cidr):
    """Another namespace behind host1 on its own veth and subnet."""
    ns = lab.namespace(tag)
    lab.veth(lab.host1, host_if, ns, 'eth0')
    lab.address(lab.host1, host_if, host_cidr)
    lab.address(ns, 'eth0', inner_cidr)
    lab.route(ns, 'default', host_cidr.split('/')[0])
    return ns


def nat(args, check=False, diff=False, ok=True):
    result = harness.run_module('nat_rule', args, check=check, diff=diff)
    if ok:
        assert result['_rc'] == 0 and not result.get('failed'), result
    return result


def probe(**args):
    result = harness.run_module('netns_probe', args)
    assert result['_rc'] == 0, result
    return result


def conntrack_entries(ns, **filters):
    result = harness.run_module('conntrack_info', dict(filters, namespace=ns))
    assert result['_rc'] == 0, result
    return result['entries']


def rules_of(ns):
    """Every ruleset of the namespace, nft packet counters left out (traffic moves them)."""
    rules = harness.rulesets(ns)
    rules['nft'] = [re.sub(r'counter packets \d+ bytes \d+', 'counter', line) for line in rules['nft']]
    return rules


def not_ours(lines):
    """iptables-save lines minus everything of ours (our chains, their rules, our jumps)."""
    return [line for line in lines if 'LNT-' not in line and 'lnt:' not in line]


def article_rules(backend, namespace, **extra):
    return dict(extra, namespace=namespace, backend=backend, rules=[
        dict(kind='masquerade', source=INNER_NET, out_interface='eth0', in_interface='veth1'),
        dict(kind='dnat', protocol='tcp', port=8080, destination=HOST1, to_address=MYSPACE, to_port=80),
    ])


# --- the article ---------------------------------------------------------------------------

def test_article_snat_and_dnat(lab, backend):
    article(lab)
    before = harness.snapshot(lab.host1)
    args = article_rules(backend, lab.host1, forward_policy='drop')

    planned = nat(args, check=True, diff=True)
    assert planned['changed'] is True and planned['backend'] == backend
    assert harness.snapshot(lab.host1) == before, 'check mode changed the namespace'

    result = nat(args, diff=True)
    assert result['changed'] is True and result['backend'] == backend
    assert result['rules_added'] == planned['rules_added'] and result['rules_removed'] == []
    # Nothing of ours before; only the policy line moves besides the added rules.
    assert all(' policy ' in line for line in result['diff']['before'].splitlines()), result['diff']
    assert any(re.search(r'policy (forward )?drop', line.lower()) for line in result['diff']['after'].splitlines())
    assert any('masquerade' in line.lower() and INNER_NET in line for line in result['rules_added'])
    assert any('8080' in line and MYSPACE in line for line in result['rules_added'])
    assert all(line in result['diff']['after'] for line in result['rules_added'])

    # SNAT: myspace reaches host2, and host2 sees host1's address (the article's tcpdump).
    ping = probe(namespace=lab.myspace, target=HOST2, protocol='icmp', listener=dict(namespace=lab.host2))
    assert ping['reachable'] is True, ping
    assert ping['observed_peer']['address'] == HOST1
    # DNAT: host2 reaches host1:8080 and lands on myspace:80 (under FORWARD policy DROP).
    web = probe(namespace=lab.host2, target=HOST1, protocol='tcp', port=8080,
                listener=dict(namespace=lab.myspace, port=80))
    assert web['reachable'] is True, web
    assert web['observed_peer']['address'] == HOST2
    # conntrack shows both translations.
    entries = conntrack_entries(lab.host1, nat='any')
    icmp = [e for e in entries if e['protocol'] == 'icmp' and e['original']['src'] == MYSPACE]
    assert icmp and icmp[0]['reply']['dst'] == HOST1 and 'SRC_NAT' in icmp[0]['status'], entries
    tcp = [e for e in entries if e['protocol'] == 'tcp' and e['original'].get('dport') == 8080]
    assert tcp and (tcp[0]['reply']['src'], tcp[0]['reply']['sport']) == (MYSPACE, 80), entries
    assert tcp[0]['original']['dst'] == HOST1 and 'DST_NAT' in tcp[0]['status']

    again = nat(args, diff=True)
    assert again['changed'] is False and again['rules_added'] == [] and again['rules_removed'] == []
    assert again['commands'] == []
    assert again['diff']['before'] == again['diff']['after']
    assert len(again['diff']['after'].splitlines()) == len(result['rules_added'])

    # The FORWARD policy is the host's iptables FORWARD policy on both backends; our nft table
    # never drops by policy (a drop there would stop what other tables accept).
    assert ':FORWARD DROP' in harness.nsexec(lab.host1, ['iptables-save', '-t', 'filter'])
    if backend == 'nftables':
        assert 'policy drop' not in harness.nsexec(lab.host1, ['nft', 'list', 'chain', 'inet', 'linuxnet_netns',
                                                               'forward'])

    # Retargeting in check mode: reported, nothing moves.
    current = harness.snapshot(lab.host1)
    moved = dict(args, rules=[args['rules'][0], dict(args['rules'][1], to_port=81)])
    preview = nat(moved, check=True, diff=True)
    assert preview['changed'] is True
    assert len(preview['rules_removed']) == len(preview['rules_added']) > 0
    assert all(re.search(r'\b81\b', line) for line in preview['rules_added']), preview['rules_added']
    assert all(re.search(r'\b80\b', line) for line in preview['rules_removed']), preview['rules_removed']
    assert harness.snapshot(lab.host1) == current

    gone = nat(dict(article_rules(backend, lab.host1, forward_policy='accept'), state='absent'))
    assert gone['changed'] is True and gone['rules_added'] == []
    assert harness.snapshot(lab.host1) == before, 'absent did not restore the ruleset exactly'
    assert nat(dict(article_rules(backend, lab.host1), state='absent'))['changed'] is False


def test_forward_both_is_the_articles_literal_step_9(lab, backend):
    article(lab)
    rule = dict(namespace=lab.host1, backend=backend, kind='masquerade', source=INNER_NET,
                out_interface='eth0', in_interface='veth1', forward='both', forward_policy='drop')
    result = nat(rule)
    forward = [line for line in result['rules_added'] if 'FORWARD' in line or ' forward: ' in line]
    if backend == 'iptables':
        assert any('-i eth0 -o veth1' in line and '-j ACCEPT' in line for line in forward), forward
        assert any('-i veth1 -o eth0' in line and '-j ACCEPT' in line for line in forward), forward
    else:
        assert any('iifname "eth0" oifname "veth1" accept' in line for line in forward), forward
        assert any('iifname "veth1" oifname "eth0" accept' in line for line in forward), forward
    assert not any('ESTABLISHED' in line.upper() for line in forward)
    # Both ways, not only replies: host2 may open a connection to myspace's own address
    # (with a route there), which the scoped default would not allow.
    lab.route(lab.host2, INNER_NET, HOST1)
    direct = probe(namespace=lab.host2, target=MYSPACE, protocol='tcp', port=22,
                   listener=dict(namespace=lab.myspace))
    assert direct['reachable'] is True, direct
    nat(dict(rule, forward='scoped'))
    blocked = probe(namespace=lab.host2, target=MYSPACE, protocol='tcp', port=22, timeout=0.5,
                    listener=dict(namespace=lab.myspace))
    assert blocked['reachable'] is False, blocked


# --- list form, purge, absent ------------------------------------------------------------------

def test_purge_removes_only_rules_the_list_no_longer_names(lab, backend):
    article(lab)
    base = dict(namespace=lab.host1, backend=backend)
    masq = dict(kind='masquerade', source=INNER_NET, out_interface='eth0')
    web = dict(kind='dnat', protocol='tcp', port=8080, to_address=MYSPACE, to_port=80)
    dns = dict(kind='dnat', protocol='udp', port='5300-5310', to_address=MYSPACE)
    nat(dict(base, rules=[masq, web, dns]))
    only_masq = nat(dict(base, rules=[masq]))
    assert only_masq['changed'] is False, 'without purge, unnamed rules stay'

    purged = nat(dict(base, rules=[masq, dns], purge=True), diff=True)
    assert purged['changed'] is True and purged['rules_added'] == []
    assert purged['rules_removed'] and all('port=8080' in line for line in purged['rules_removed']
                                           if 'lnt:' in line and 'lnt:jump' not in line)
    text = '\n'.join(rules_of(lab.host1)['iptables-save'] + rules_of(lab.host1)['nft'])
    assert 'port=8080' not in text and 'port=5300-5310' in text and 'lnt:masq' in text
    assert nat(dict(base, rules=[masq, dns], purge=True))['changed'] is False

    everything = nat(dict(base, rules=[], purge=True))
    assert everything['changed'] is True
    leftovers = rules_of(lab.host1)
    assert not any('lnt' in line.lower() or 'linuxnet' in line for key in leftovers for line in leftovers[key])


# --- coexistence with Docker ---------------------------------------------------------------------

DOCKER_LIKE = """*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:DOCKER - [0:0]
-A PREROUTING -m addrtype --dst-type LOCAL -j DOCKER
-A OUTPUT ! -d 127.0.0.0/8 -m addrtype --dst-type LOCAL -j DOCKER
-A POSTROUTING -s 172.17.0.0/16 ! -o docker0 -j MASQUERADE
-A DOCKER -i docker0 -j RETURN
-A DOCKER ! -i docker0 -p tcp -m tcp --dport 9000 -j DNAT --to-destination 172.17.0.2:9000
COMMIT
*filter
:INPUT ACCEPT [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
:DOCKER - [0:0]
:DOCKER-ISOLATION-STAGE-1 - [0:0]
:DOCKER-ISOLATION-STAGE-2 - [0:0]
:DOCKER-USER - [0:0]
-A FORWARD -j DOCKER-USER
-A FORWARD -j DOCKER-ISOLATION-STAGE-1
-A FORWARD -o docker0 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-A FORWARD -o docker0 -j DOCKER
-A FORWARD -i docker0 ! -o docker0 -j ACCEPT
-A FORWARD -i docker0 -o docker0 -j ACCEPT
-A DOCKER -d 172.17.0.2/32 ! -i docker0 -o docker0 -p tcp -m tcp --dport 9000 -j ACCEPT
-A DOCKER-ISOLATION-STAGE-1 -i docker0 ! -o docker0 -j DOCKER-ISOLATION-STAGE-2
-A DOCKER-ISOLATION-STAGE-1 -j RETURN
-A DOCKER-ISOLATION-STAGE-2 -o docker0 -j DROP
-A DOCKER-ISOLATION-STAGE-2 -j RETURN
-A DOCKER-USER -j RETURN
COMMIT
"""


def test_coexists_with_a_docker_ruleset_under_forward_drop(lab, backend):
    article(lab)
    harness.nsexec(lab.host1, ['iptables-restore'], input=DOCKER_LIKE)
    original = rules_of(lab.host1)
    args = article_rules(backend, lab.host1)

    result = nat(args)
    assert result['changed'] is True and result['backend'] == backend
    now = rules_of(lab.host1)
    assert not_ours(now['iptables-save']) == original['iptables-save'], 'Docker rules were changed'
    forward = [line for line in now['iptables-save'] if line.startswith('-A FORWARD')]
    # Docker's DOCKER-USER keeps precedence (the administrator's restrictions), then the
    # collection's admin chain, then our jump, before Docker's own accepts and the DROP policy.
    assert forward[:3] == ['-A FORWARD -j DOCKER-USER', '-A FORWARD -m comment --comment "lnt:user" -j LNT-USER',
                           '-A FORWARD -m comment --comment "lnt:jump" -j LNT-FORWARD'], forward
    assert [line for line in forward if 'LNT-' in line] == forward[1:3]
    if backend == 'nftables':
        # The accepts live in iptables too: our nft table alone cannot override the DROP.
        assert any(line.startswith('-A LNT-FORWARD') for line in now['iptables-save'])
        assert not any(line.startswith('-A LNT-P') for line in now['iptables-save'])

    ping = probe(namespace=lab.myspace, target=HOST2, protocol='icmp', listener=dict(namespace=lab.host2))
    assert ping['reachable'] is True and ping['observed_peer']['address'] == HOST1, ping
    web = probe(namespace=lab.host2, target=HOST1, protocol='tcp', port=8080,
                listener=dict(namespace=lab.myspace, port=80))
    assert web['reachable'] is True, web
    assert nat(args)['changed'] is False

    nat(dict(args, state='absent'))
    assert rules_of(lab.host1) == original, 'absent did not restore the Docker ruleset exactly'


def test_random_fully_reaches_the_kernel_and_changes_in_place(lab, backend):
    article(lab)
    args = article_rules(backend, lab.host1)
    args['rules'][0]['random_fully'] = True
    applied = nat(args, diff=True)
    assert applied['changed'] is True
    fully = [line for line in rules_of(lab.host1)['nft' if backend == 'nftables' else 'iptables-save']
             if 'fully-random' in line or '--random-fully' in line]
    assert len(fully) == 1 and ('masquerade fully-random' in fully[0] if backend == 'nftables'
                                else '-j MASQUERADE --random-fully' in fully[0]), fully
    ping = probe(namespace=lab.myspace, target=HOST2, protocol='icmp', listener=dict(namespace=lab.host2))
    assert ping['reachable'] is True and ping['observed_peer']['address'] == HOST1, ping
    assert nat(args)['changed'] is False

    # Off again: the same rule (same id) rewritten, nothing else touched.
    args['rules'][0]['random_fully'] = False
    before = rules_of(lab.host1)
    preview = nat(args, check=True)
    assert preview['changed'] is True and rules_of(lab.host1) == before, 'check mode changed the rules'
    off = nat(args)
    assert off['changed'] is True
    assert len(off['rules_added']) == len(off['rules_removed']) == 1, off
    after = rules_of(lab.host1)
    assert not [line for line in after['nft'] + after['iptables-save']
                if 'fully-random' in line or '--random-fully' in line]
    assert nat(args)['changed'] is False


def test_warns_of_a_foreign_nft_forward_chain_that_drops_by_policy(lab, backend):
    article(lab)
    args = article_rules(backend, lab.host1)
    first = nat(args)
    assert first['changed'] is True and harness.warning_texts(first) == [], first.get('warnings')
    # A firewall of its own in nft (firewalld-like): its drop policy beats any accept of ours.
    harness.nsexec(lab.host1, ['nft', '-f', '-'], input=(
        'table inet fw { chain filter_FORWARD { type filter hook forward priority 10; policy drop; }; }\n'))
    again = nat(args)
    assert again['changed'] is False
    assert harness.warning_texts(again) == [
        'namespace %s: the nft chain inet fw filter_FORWARD drops forwarded packets by policy; accepts of ours '
        'cannot override it' % lab.host1], again.get('warnings')


def saved(ns, tool):
    """iptables-save output of one flavour without comments and counters."""
    out = harness.nsexec(ns, [tool], check=False)
    return [line.split(' [')[0] if line.startswith(':') else line
            for line in out.splitlines() if line and not line.startswith('#')]


def test_auto_backend_follows_a_legacy_managed_namespace(lab):
    article(lab)
    clean = nat(dict(namespace=lab.host1, kind='masquerade', source=INNER_NET, out_interface='eth0'), check=True)
    assert clean['backend'] == 'nftables', 'auto on a namespace without legacy rules'

    harness.nsexec(lab.host1, ['iptables-legacy-restore'], input=DOCKER_LIKE)
    legacy_before, nft_before = saved(lab.host1, 'iptables-legacy-save'), rules_of(lab.host1)['nft']
    args = article_rules('auto', lab.host1)
    result = nat(args)
    assert result['backend'] == 'iptables'
    assert result['rules_added'] and all(line.startswith('ipv4 (legacy) ') for line in result['rules_added'])
    legacy_now = saved(lab.host1, 'iptables-legacy-save')
    assert not_ours(legacy_now) == legacy_before
    assert [line for line in legacy_now if line.startswith('-A FORWARD')][:3] == [
        '-A FORWARD -j DOCKER-USER', '-A FORWARD -m comment --comment "lnt:user" -j LNT-USER',
        '-A FORWARD -m comment --comment "lnt:jump" -j LNT-FORWARD']
    assert rules_of(lab.host1)['nft'] == nft_before, 'nothing went to iptables-nft or nftables'

    ping = probe(namespace=lab.myspace, target=HOST2, protocol='icmp', listener=dict(namespace=lab.host2))
    assert ping['reachable'] is True and ping['observed_peer']['address'] == HOST1, ping
    web = probe(namespace=lab.host2, target=HOST1, protocol='tcp', port=8080,
                listener=dict(namespace=lab.myspace, port=80))
    assert web['reachable'] is True, web

    again = nat(args)
    assert again['changed'] is False and again['backend'] == 'iptables'
    nat(dict(args, state='absent'))
    assert saved(lab.host1, 'iptables-legacy-save') == legacy_before


# --- conntrack cleanup ----------------------------------------------------------------------------

RECEIVER = r'''
import socket, sys
family = socket.AF_INET6 if ':' in sys.argv[1] else socket.AF_INET
s = socket.socket(family, socket.SOCK_DGRAM)
s.bind((sys.argv[1], int(sys.argv[2])))
with open(sys.argv[3], 'a') as out:
    print('ready', file=out, flush=True)
    while True:
        data, peer = s.recvfrom(2048)
        print(data.decode(), peer[0], file=out, flush=True)
'''

SENDER = r'''
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(('0.0.0.0', int(sys.argv[3])))
s.sendto(sys.argv[4].encode(), (sys.argv[1], int(sys.argv[2])))
'''


def udp_entries(ns, port=5353):
    entries = conntrack.list_entries(ns, 'ipv4')
    return [e for e in entries if e['protocol'] == 'udp' and e['original'].get('dport') == port]


class Receivers(object):
    """UDP receivers in several namespaces, each logging what it got to a file."""

    def __init__(self):
        self.procs, self.logs = [], {}

    def start(self, ns, port):
        handle, path = tempfile.mkstemp(prefix='lnt-udp-')
        os.close(handle)
        self.logs[ns] = path
        self.procs.append(subprocess.Popen(['ip', 'netns', 'exec', ns, sys.executable, '-c', RECEIVER,
                                            '0.0.0.0', str(port), path]))
        deadline = time.monotonic() + 5
        while 'ready' not in self.read(ns) and time.monotonic() < deadline:
            time.sleep(0.02)

    def read(self, ns):
        with open(self.logs[ns]) as handle:
            return handle.read()

    def got(self, ns, word, wait=1.0):
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if word in self.read(ns):
                return True
            time.sleep(0.02)
        return False

    def stop(self):
        for proc in self.procs:
            proc.kill()
            proc.wait()
        for path in self.logs.values():
            os.unlink(path)


@pytest.fixture
def receivers():
    made = Receivers()
    yield made
    made.stop()


def test_udp_retarget_with_and_without_conntrack_cleanup(lab, backend, receivers):
    article(lab)
    other = inner_namespace(lab, 'ob', 'veth3', '192.168.46.2/24', '192.168.46.3/24')
    receivers.start(lab.myspace, 5353)
    receivers.start(other, 5353)

    def send(word):
        harness.nsexec(lab.host2, [sys.executable, '-c', SENDER, HOST1, '5353', '40000', word])

    def rule(target, cleanup):
        return dict(namespace=lab.host1, backend=backend, kind='dnat', protocol='udp', port=5353,
                    destination=HOST1, to_address=target, conntrack_cleanup=cleanup)

    # A client talking to the port before it is published leaves an untranslated entry
    # (the namespace tracks connections once any NAT rule exists).
    nat(dict(namespace=lab.host1, backend=backend, kind='masquerade', source=INNER_NET, out_interface='eth0'))
    send('early')
    first = nat(rule(MYSPACE, True))
    assert first['conntrack_deleted'] >= 1, 'the pre-publication UDP entry was not deleted'
    send('one')
    assert receivers.got(lab.myspace, 'one'), receivers.read(lab.myspace)

    stale = nat(rule('192.168.46.3', False))
    assert stale['changed'] is True and stale['conntrack_deleted'] == 0
    send('two')
    assert receivers.got(lab.myspace, 'two'), 'without cleanup the old flow keeps its old target'
    assert 'two' not in receivers.read(other)

    nat(rule(MYSPACE, False))
    cleaned = nat(rule('192.168.46.3', True))
    assert cleaned['changed'] is True and cleaned['conntrack_deleted'] >= 1, cleaned
    send('three')
    assert receivers.got(other, 'three'), 'with cleanup the next datagram reaches the new target'
    assert 'three' not in receivers.read(lab.myspace)
    assert not [e for e in udp_entries(lab.host1) if e['reply']['src'] == MYSPACE]

    removed = nat(dict(rule('192.168.46.3', True), state='absent'))
    assert removed['conntrack_deleted'] >= 1
    assert udp_entries(lab.host1) == []


# --- hairpin and host-originated -------------------------------------------------------------------

def test_hairpin_and_host_originated_access(lab, backend):
    article(lab)
    other = inner_namespace(lab, 'ob', 'veth3', '192.168.46.2/24', '192.168.46.3/24')
    nat(dict(namespace=lab.host1, backend=backend, rules=[
        dict(kind='masquerade', source=INNER_NET, out_interface='eth0'),
        dict(kind='dnat', protocol='tcp', port=8080, to_address=MYSPACE, to_port=80),
        dict(kind='dnat', protocol='tcp', port=8443, in_interface='eth0', to_address=MYSPACE, to_port=443),
    ], forward_policy='drop'))

    # From outside, through the published port on host1's address.
    outside = probe(namespace=lab.host2, target=HOST1, protocol='tcp', port=8443,
                    listener=dict(namespace=lab.myspace, port=443))
    assert outside['reachable'] is True, outside
    # From host1 itself (nat OUTPUT).
    local = probe(namespace=lab.host1, target=HOST1, protocol='tcp', port=8080,
                  listener=dict(namespace=lab.myspace, port=80))
    assert local['reachable'] is True, local
    # The target through its own published address: masqueraded so replies come back.
    for port, target_port in ((8080, 80), (8443, 443)):
        itself = probe(namespace=lab.myspace, target=HOST1, protocol='tcp', port=port,
                       listener=dict(namespace=lab.myspace, port=target_port))
        assert itself['reachable'] is True, itself
        assert itself['observed_peer']['address'] == HOST1_INNER, itself
    # Another inner namespace through host1's outside address.
    neighbour = probe(namespace=other, target=HOST1, protocol='tcp', port=8080,
                      listener=dict(namespace=lab.myspace, port=80))
    assert neighbour['reachable'] is True, neighbour
    assert neighbour['observed_peer']['address'] == '192.168.46.3'
    # Without hairpin, the host itself is not translated.
    nat(dict(namespace=lab.host1, backend=backend, kind='dnat', protocol='tcp', port=8080, to_address=MYSPACE,
             to_port=80, hairpin=False))
    refused = probe(namespace=lab.host1, target=HOST1, protocol='tcp', port=8080, timeout=0.5,
                    listener=dict(namespace=lab.myspace, port=80))
    assert refused['reachable'] is False, refused


# --- IPv6 ---------------------------------------------------------------------------------------------

def test_ipv6_masquerade_and_dnat(lab, backend):
    article(lab, ipv6=True)
    before = harness.snapshot(lab.host1)
    args = dict(namespace=lab.host1, backend=backend, forward_policy='drop', rules=[
        dict(kind='masquerade', source='fd45:3::/64', out_interface='eth0'),
        dict(kind='dnat', protocol='tcp', port=8080, destination=HOST1_V6, to_address=MYSPACE_V6, to_port=80),
    ])
    result = nat(args)
    assert result['changed'] is True
    if backend == 'iptables':
        assert all(line.startswith('ipv6 ') for line in result['rules_added'])
    ping = probe(namespace=lab.myspace, target=HOST2_V6, protocol='icmp', listener=dict(namespace=lab.host2))
    assert ping['reachable'] is True and ping['observed_peer']['address'] == HOST1_V6, ping
    web = probe(namespace=lab.host2, target=HOST1_V6, protocol='tcp', port=8080,
                listener=dict(namespace=lab.myspace, port=80))
    assert web['reachable'] is True and web['observed_peer']['address'] == HOST2_V6, web
    tcp = conntrack_entries(lab.host1, protocol='tcp', family='ipv6', dport=8080)
    assert tcp and (tcp[0]['reply']['src'], tcp[0]['reply']['sport']) == (MYSPACE_V6, 80), tcp
    assert nat(args)['changed'] is False
    nat(dict(args, forward_policy='accept', state='absent'))
    assert harness.snapshot(lab.host1) == before


# --- NodePort ---------------------------------------------------------------------------------------------

def test_nodeport_dnat_to_another_host_with_snat(lab, backend):
    """A (client) -> B (node, :30000) -> C (host) -> pod 172.26.0.3:8080
    (the NodePort example of pshizhsysu's network notes, https://www.kancloud.cn/pshizhsysu/network)."""
    a, b, c, pod = lab.namespace('na'), lab.namespace('nb'), lab.namespace('nc'), lab.namespace('np')
    lab.veth(a, 'eth0', b, 'eth0')
    lab.veth(b, 'eth1', c, 'eth0')
    lab.veth(c, 'veth0', pod, 'eth0')
    for ns, ifname, cidr in ((a, 'eth0', '192.168.0.1/24'), (b, 'eth0', '192.168.0.2/24'),
                             (b, 'eth1', '10.20.0.2/24'), (c, 'eth0', '10.20.0.3/24'),
                             (c, 'veth0', '172.26.0.1/24'), (pod, 'eth0', '172.26.0.3/24')):
        lab.address(ns, ifname, cidr)
    lab.route(b, '172.26.0.0/24', '10.20.0.3')
    lab.route(pod, 'default', '172.26.0.1')
    lab.forwarding(b)
    lab.forwarding(c)
    result = nat(dict(namespace=b, backend=backend, rules=[
        dict(kind='dnat', protocol='tcp', port=30000, to_address='172.26.0.3', to_port=8080),
        dict(kind='snat', destination='172.26.0.3/32', out_interface='eth1', to_source='10.20.0.2'),
    ]))
    assert result['changed'] is True
    reached = probe(namespace=a, target='192.168.0.2', protocol='tcp', port=30000,
                    listener=dict(namespace=pod, port=8080))
    assert reached['reachable'] is True, reached
    assert reached['observed_peer']['address'] == '10.20.0.2', 'the pod sees the node, not the client'
    entries = conntrack_entries(b, protocol='tcp', dport=30000, nat='both')
    assert entries, 'B has no entry with both translations'
    entry = entries[0]
    assert (entry['original']['src'], entry['original']['dst']) == ('192.168.0.1', '192.168.0.2')
    assert (entry['reply']['src'], entry['reply']['sport'], entry['reply']['dst']) == ('172.26.0.3', 8080,
                                                                                       '10.20.0.2')


# --- bad input ------------------------------------------------------------------------------------------

BAD_RULES = [
    (dict(kind='dnat', protocol='tcp', port=0, to_address=MYSPACE), 'port', 'from 1 to 65535'),
    (dict(kind='dnat', protocol='tcp', port=65536, to_address=MYSPACE), 'port', 'from 1 to 65535'),
    (dict(kind='dnat', protocol='tcp', port='8080-8090', to_address=MYSPACE, to_port=80), 'to_port', 'range'),
    (dict(kind='dnat', protocol='tcp', port=8080), 'to_address', 'needs to_address'),
    (dict(kind='dnat', port=8080, to_address=MYSPACE), 'protocol', 'needs protocol'),
    (dict(kind='dnat', protocol='tcp', port=8080, to_address='fd45::3', destination=HOST1), 'to_address',
     'mixes IPv4 and IPv6'),
    (dict(kind='snat', source=INNER_NET), 'to_source', 'needs to_source'),
    (dict(kind='masquerade', source=INNER_NET), 'out_interface', 'needs out_interface'),
    (dict(kind='masquerade', source='192.168.45.1/24', out_interface='eth0'), 'source', 'host bits'),
    (dict(kind='masquerade', source=INNER_NET, out_interface='eth0', forward='both'), 'in_interface', 'both'),
    (dict(kind='masquerade', source=INNER_NET, out_interface='an-interface-name-too-long'), 'out_interface',
     'at most 15 bytes'),
    (dict(kind='masquerade', source=INNER_NET, out_interface='eth0', to_port=80), 'to_port', 'only to kind dnat'),
]


def test_bad_input_fails_clearly_and_changes_nothing(netns):
    ns = netns('bad')
    before = harness.snapshot(ns)
    # One list with every mistake: each is named with its index, nothing is applied.
    good = dict(kind='masquerade', source=INNER_NET, out_interface='eth0')
    result = nat(dict(namespace=ns, rules=[good] + [bad[0] for bad in BAD_RULES]), ok=False)
    assert result.get('failed') is True, result
    for index, (rule, field, reason) in enumerate(BAD_RULES, start=1):
        named = 'rules[%d].%s=' % (index, field)
        assert named in result['msg'], (named, result['msg'])
        assert reason in result['msg'].split(named, 1)[1].split('; rules[')[0], (rule, result['msg'])
    assert len(result['errors']) == len(BAD_RULES)
    single = nat(dict(BAD_RULES[0][0], namespace=ns), ok=False)
    assert single.get('failed') and single['msg'].startswith('invalid input: port=0'), single
    kindless = nat(dict(namespace=ns, source=INNER_NET, out_interface='eth0'), ok=False)
    assert kindless.get('failed') and 'kind' in kindless['msg'], kindless
    unknown = nat(dict(namespace=ns, kind='dnat', protocol='icmp', port=1, to_address=MYSPACE), ok=False)
    assert unknown.get('failed') and 'protocol' in unknown['msg'], unknown
    missing = nat(dict(namespace=ns + 'x', kind='masquerade', source=INNER_NET, out_interface='eth0'), ok=False)
    assert missing.get('failed') and 'does not exist' in missing['msg'], missing
    assert ns + 'x' not in harness.list_netns()
    assert harness.snapshot(ns) == before
