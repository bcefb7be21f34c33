# SPDX-License-Identifier: GPL-3.0-or-later
"""Small namespace topologies for the probe and conntrack tests, built with plain
`ip`/`iptables` argv (independent of the collection's own modules), every namespace
uniquely named and removed by close(). Both ends of every veth live in namespaces made
here; nothing touches the root namespace."""
import contextlib

from tests.support import harness

# The reference article's addresses (Sammy Liu, http://www.cnblogs.com/sammyliu/), inside
# namespaces only.
MYSPACE = '192.168.45.3'
HOST1_INNER = '192.168.45.2'
HOST1 = '192.168.1.32'
HOST2 = '192.168.1.15'
INNER2 = '192.168.45.4'
# IPv6 lab prefix (a ULA that is not the host's own fd00::/64).
V6_A = 'fd45:1::1'
V6_B = 'fd45:1::2'


class Lab(object):
    def __init__(self):
        self.namespaces = []

    def namespace(self, tag):
        return harness.add_netns(tag, self.namespaces)

    def veth(self, ns_a, if_a, ns_b, if_b):
        harness.sh(['ip', '-n', ns_a, 'link', 'add', if_a, 'type', 'veth', 'peer', 'name', if_b, 'netns', ns_b])
        for ns, ifname in ((ns_a, if_a), (ns_b, if_b)):
            harness.sh(['ip', '-n', ns, 'link', 'set', ifname, 'up'])

    def address(self, ns, ifname, cidr):
        extra = ['nodad'] if ':' in cidr else []  # usable at once, no duplicate-address wait
        harness.sh(['ip', '-n', ns, 'addr', 'add', cidr, 'dev', ifname] + extra)

    def route(self, ns, dest, via):
        family = ['-6'] if ':' in via else []
        harness.sh(['ip', '-n', ns] + family + ['route', 'add', dest, 'via', via])

    def forwarding(self, ns):
        harness.nsexec(ns, ['sysctl', '-qw', 'net.ipv4.ip_forward=1'])

    def iptables(self, ns, *args):
        harness.nsexec(ns, ['iptables', '-w'] + list(args))

    def ip6tables(self, ns, *args):
        harness.nsexec(ns, ['ip6tables', '-w'] + list(args))

    def track_connections(self, ns):
        """A namespace has no conntrack entries until a rule there uses conntrack."""
        self.iptables(ns, '-A', 'INPUT', '-m', 'conntrack', '--ctstate', 'NEW,ESTABLISHED,RELATED', '-j', 'ACCEPT')
        self.ip6tables(ns, '-A', 'INPUT', '-m', 'conntrack', '--ctstate', 'NEW,ESTABLISHED,RELATED', '-j', 'ACCEPT')

    def flush_conntrack(self, ns):
        harness.nsexec(ns, ['conntrack', '-F'], check=False)

    def close(self):
        for name in self.namespaces:
            harness.delete_netns(name)
        self.namespaces = []


def _closed_on_failure(build):
    """A builder that fails half-way removes the namespaces it had made."""
    def wrapper(**options):
        lab = Lab()
        try:
            build(lab, **options)
        except BaseException:
            lab.close()
            raise
        return lab
    wrapper.__name__ = build.__name__
    wrapper.__doc__ = build.__doc__
    return wrapper


@_closed_on_failure
def pair_lab(lab):
    """a <-> b over one veth, IPv4 192.168.1.0/24 and IPv6 fd45:1::/64, b tracks connections."""
    lab.a = lab.namespace('pa')
    lab.b = lab.namespace('pb')
    lab.veth(lab.a, 'eth0', lab.b, 'eth0')
    lab.address(lab.a, 'eth0', HOST2 + '/24')
    lab.address(lab.b, 'eth0', HOST1 + '/24')
    lab.address(lab.a, 'eth0', V6_A + '/64')
    lab.address(lab.b, 'eth0', V6_B + '/64')
    lab.track_connections(lab.b)


@_closed_on_failure
def article_lab(lab):
    """The article: myspace (192.168.45.3) behind host1 (veth1 192.168.45.2, eth0 192.168.1.32)
    with MASQUERADE -s 192.168.45.0/24 -o eth0, and host2 (192.168.1.15) that has no route to
    192.168.45.0/24. Host1 also publishes 8080/tcp -> 192.168.45.3:80 (DNAT), and 8081/tcp ->
    192.168.45.3:81 with a MASQUERADE towards myspace (DNAT and SNAT on one flow)."""
    lab.myspace = lab.namespace('ms')
    lab.host1 = lab.namespace('h1')
    lab.host2 = lab.namespace('h2')
    lab.veth(lab.host1, 'veth1', lab.myspace, 'veth2')
    lab.veth(lab.host1, 'eth0', lab.host2, 'eth0')
    lab.address(lab.host1, 'veth1', HOST1_INNER + '/24')
    lab.address(lab.myspace, 'veth2', MYSPACE + '/24')
    lab.address(lab.host1, 'eth0', HOST1 + '/24')
    lab.address(lab.host2, 'eth0', HOST2 + '/24')
    lab.route(lab.myspace, 'default', HOST1_INNER)
    lab.forwarding(lab.host1)
    lab.iptables(lab.host1, '-t', 'nat', '-A', 'POSTROUTING', '-s', '192.168.45.0/24', '-o', 'eth0',
                 '-j', 'MASQUERADE')
    lab.iptables(lab.host1, '-t', 'nat', '-A', 'PREROUTING', '-i', 'eth0', '-p', 'tcp', '--dport', '8080',
                 '-j', 'DNAT', '--to-destination', MYSPACE + ':80')
    lab.iptables(lab.host1, '-t', 'nat', '-A', 'PREROUTING', '-i', 'eth0', '-p', 'tcp', '--dport', '8081',
                 '-j', 'DNAT', '--to-destination', MYSPACE + ':81')
    lab.iptables(lab.host1, '-t', 'nat', '-A', 'POSTROUTING', '-o', 'veth1', '-p', 'tcp', '-d', MYSPACE,
                 '--dport', '81', '-j', 'MASQUERADE')


@_closed_on_failure
def shared_snat_lab(lab, masquerade=True):
    """Two inner namespaces (192.168.45.3 and .4) on a bridge in host1, masqueraded to
    host1's 192.168.1.32 towards host2 (snat-conntrack-notes: two VMs behind one SNAT).
    With masquerade=False the source NAT is left to the caller (nat_rule)."""
    lab.host1 = lab.namespace('h1')
    lab.host2 = lab.namespace('h2')
    lab.inner = [lab.namespace('in'), lab.namespace('in')]
    harness.sh(['ip', '-n', lab.host1, 'link', 'add', 'br0', 'type', 'bridge'])
    harness.sh(['ip', '-n', lab.host1, 'link', 'set', 'br0', 'up'])
    lab.address(lab.host1, 'br0', HOST1_INNER + '/24')
    for index, (ns, address) in enumerate(zip(lab.inner, (MYSPACE, INNER2))):
        port = 'vport%d' % index
        lab.veth(lab.host1, port, ns, 'eth0')
        harness.sh(['ip', '-n', lab.host1, 'link', 'set', port, 'master', 'br0'])
        lab.address(ns, 'eth0', address + '/24')
        lab.route(ns, 'default', HOST1_INNER)
    lab.veth(lab.host1, 'eth0', lab.host2, 'eth0')
    lab.address(lab.host1, 'eth0', HOST1 + '/24')
    lab.address(lab.host2, 'eth0', HOST2 + '/24')
    lab.forwarding(lab.host1)
    if masquerade:
        lab.iptables(lab.host1, '-t', 'nat', '-A', 'POSTROUTING', '-s', '192.168.45.0/24', '-o', 'eth0',
                     '-j', 'MASQUERADE')


@contextlib.contextmanager
def built(factory, **options):
    lab = factory(**options)
    try:
        yield lab
    finally:
        lab.close()


def ping_in_turn(namespaces, target, icmp_id, listener_namespace, count=3):
    """netns_probe ICMP from each namespace in turn with the same ICMP id, each with a one-shot
    listener in ``listener_namespace``; returns the results in order.

    In turn, not at the same instant: the ICMP conntrack entries live 30 s, so the flows still
    share host1's table and need distinct translated ids. Two first packets sent at the same
    instant can both be given the same translated id on two CPUs; the kernel then drops one at
    confirmation (``conntrack -S``: insert_failed=1 drop=1), measured in 2 of 40 runs here."""
    return [harness.run_module('netns_probe', dict(
        namespace=namespace, target=target, protocol='icmp', icmp_id=icmp_id, count=count,
        timeout=2, listener=dict(namespace=listener_namespace))) for namespace in namespaces]
