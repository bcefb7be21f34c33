# SPDX-License-Identifier: GPL-3.0-or-later
"""The change matrix of the netns_nat role: for each edit v1 -> v2 of the inventory, the host
that got v1 and then v2 must end exactly like a host that got v2 alone (same links,
addresses, routes, forwarding sysctls, iptables/ip6tables/nft rules in the same order), the
published ports of v2 answer and the ones v2 dropped do not, the remote sees the source
address v2 asks for, and ``absent`` gives back the host as it was before v1.

The lab (all namespaces of this test run): host (the role's target) with eth0 192.168.1.32
and .33 towards outside's eth0 192.168.1.15, and eth1 192.168.2.32 towards outside's eth1
192.168.2.15 (a second egress). Per edit, on one lab: fresh v2 -> snapshot; v1 (from v2,
itself an edit) -> v2 -> snapshot and traffic; absent -> the snapshot from before."""
import copy

from tests.support import harness
from tests.support import role_lab
from tests.support import traffic

HOST, SECOND, OUTSIDE = '192.168.1.32', '192.168.1.33', '192.168.1.15'
HOST_ETH1, OUTSIDE_ETH1 = '192.168.2.32', '192.168.2.15'
WHOAMI_PORT = 7000
TARGET_PORTS = (80, 81)


def namespace(name, host_interface, net, published=8081, **extra):
    entry = {'name': name, 'host_interface': host_interface, 'host_address': '10.%d.0.1/24' % net,
             'inner_interface': 'eth0', 'inner_address': '10.%d.0.2/24' % net,
             'port_forwards': [{'protocol': 'tcp', 'published_port': published, 'target_port': 80}]}
    entry.update(extra)
    return entry


class MatrixLab(role_lab.RoleLab):
    """RoleLab plus a second address on the host's eth0 (a fixed SNAT address) and a second
    egress eth1; inner namespaces a, b, c (names reused by every edit)."""

    def __init__(self, workdir, backend):
        super(MatrixLab, self).__init__(workdir, tag='m')
        self.backend = backend
        harness.sh(['ip', '-n', self.host, 'addr', 'add', SECOND + '/24', 'dev', 'eth0'])
        harness.sh(['ip', '-n', self.host, 'link', 'add', 'eth1', 'type', 'veth', 'peer', 'name', 'eth1',
                    'netns', self.outside])
        for ns, address in ((self.host, HOST_ETH1), (self.outside, OUTSIDE_ETH1)):
            harness.sh(['ip', '-n', ns, 'addr', 'add', address + '/24', 'dev', 'eth1'])
            harness.sh(['ip', '-n', ns, 'link', 'set', 'eth1', 'up'])
        self.a, self.b, self.c = self.inner_name('a'), self.inner_name('b'), self.inner_name('c')
        self.processes = []
        self.pristine = self.snapshot()

    def v1(self):
        """Two namespaces: a masqueraded with 8081 -> :80, b SNAT'ed to the host address with 8082 -> :80."""
        return {'netns_nat_backend': self.backend, 'netns_nat_forward_policy': 'drop',
                'netns_nat_namespaces': [
                    namespace(self.a, 'ha', 81, 8081),
                    namespace(self.b, 'hb', 82, 8082, source_nat='snat', snat_address=HOST)]}

    def apply(self, variables, state=None):
        run = self.run(variables, state=state)
        assert run.rc == 0 and run.recap('target')['failed'] == 0, run.output
        return run

    # --- traffic ---------------------------------------------------------------------------

    def start_listeners(self, variables):
        for entry in variables['netns_nat_namespaces']:
            self.processes.append(traffic.start_listener(entry['name'], entry['name'], TARGET_PORTS))
        self.processes.append(traffic.start_listener(self.outside, 'outside', [WHOAMI_PORT]))

    def stop_listeners(self):
        for proc in self.processes:
            traffic.stop(proc)
        self.processes = []

    def connect(self, ns, address, port, timeout=1.5):
        return traffic.connect(ns, address, port, timeout)

    def close(self):
        self.stop_listeners()
        super(MatrixLab, self).close()


def expected_traffic(lab, v1, v2):
    """(published: {port: namespace}, dropped: [ports], sources: {namespace: (remote, source)})."""
    published, sources = {}, {}
    for entry in v2['netns_nat_namespaces']:
        for forward in entry.get('port_forwards') or []:
            published[forward['published_port']] = entry['name']
        egress = entry.get('egress_interface', 'eth0')
        remote = OUTSIDE_ETH1 if egress == 'eth1' else OUTSIDE
        kind = entry.get('source_nat', 'masquerade')
        if kind == 'snat':
            sources[entry['name']] = (remote, entry['snat_address'])
        elif kind == 'masquerade':
            sources[entry['name']] = (remote, HOST_ETH1 if egress == 'eth1' else HOST)
    old = set(forward['published_port'] for entry in v1['netns_nat_namespaces']
              for forward in entry.get('port_forwards') or [])
    return published, sorted(old - set(published)), sources


def check_traffic(lab, v1, v2):
    published, dropped, sources = expected_traffic(lab, v1, v2)
    lab.start_listeners(v2)
    try:
        seen = dict((port, lab.connect(lab.outside, HOST, port)) for port in sorted(published))
        assert seen == dict((port, '%s %s' % (name, OUTSIDE)) for port, name in published.items()), seen
        for port in dropped:
            answer = lab.connect(lab.outside, HOST, port, timeout=0.7)
            assert answer.startswith('unreachable'), 'port %d still published: %s' % (port, answer)
        for name, (remote, source) in sorted(sources.items()):
            answer = lab.connect(name, remote, WHOAMI_PORT)
            assert answer == 'outside %s' % source, (name, answer)
    finally:
        lab.stop_listeners()


def run_edit(lab, edit):
    """One row of the matrix; ``edit(lab, variables)`` turns a copy of v1 into v2."""
    v1 = lab.v1()
    v2 = copy.deepcopy(v1)
    edit(lab, v2)
    try:
        lab.apply(v2)
        fresh = role_lab.normalized(lab.snapshot())
        lab.apply(v1)
        run = lab.apply(v2)
        assert run.recap('target')['changed'] > 0, run.output
        edited = role_lab.normalized(lab.snapshot())
        role_lab.assert_same(edited, fresh)
        again = lab.apply(v2)
        assert again.recap('target')['changed'] == 0, again.output
        check_traffic(lab, v1, v2)
    finally:
        lab.apply(v2, state='absent')
    role_lab.assert_same(lab.snapshot(), lab.pristine)


# --- the edits (v1 -> v2) ------------------------------------------------------------------

def _a(variables):
    return variables['netns_nat_namespaces'][0]


def _b(variables):
    return variables['netns_nat_namespaces'][1]


def add_namespace(lab, v):
    v['netns_nat_namespaces'].append(namespace(lab.c, 'hc', 83, 8083))


def remove_namespace(lab, v):
    del v['netns_nat_namespaces'][1]


def change_published_port(lab, v):
    _a(v)['port_forwards'][0]['published_port'] = 9091


def change_target_port(lab, v):
    _a(v)['port_forwards'][0]['target_port'] = 81


def change_inner_address(lab, v):
    _a(v)['inner_address'] = '10.81.0.5/24'


def change_host_address(lab, v):
    _a(v)['host_address'] = '10.81.0.9/24'


def change_subnet(lab, v):
    _a(v).update(host_address='10.84.0.1/24', inner_address='10.84.0.2/24')


def masquerade_to_snat(lab, v):
    _a(v).update(source_nat='snat', snat_address=SECOND)


def snat_to_masquerade(lab, v):
    _b(v)['source_nat'] = 'masquerade'
    del _b(v)['snat_address']


def change_snat_address(lab, v):
    _b(v)['snat_address'] = SECOND


def change_forward_mode(lab, v):
    _a(v)['forward_mode'] = 'both'


def change_egress_interface(lab, v):
    _a(v)['egress_interface'] = 'eth1'


def switch_backend(lab, v):
    v['netns_nat_backend'] = 'nftables' if lab.backend == 'iptables' else 'iptables'


def turn_on_random_fully(lab, v):
    _a(v)['random_fully'] = True


def rename_host_interface(lab, v):
    _a(v)['host_interface'] = 'hx'


def rename_inner_interface(lab, v):
    _b(v)['inner_interface'] = 'in0'


def drop_default_route(lab, v):
    _b(v)['default_route'] = False
    _b(v)['source_nat'] = 'none'
    del _b(v)['snat_address']
    _b(v)['port_forwards'] = []


EDITS = [add_namespace, remove_namespace, change_published_port, change_target_port, change_inner_address,
         change_host_address, change_subnet, masquerade_to_snat, snat_to_masquerade, change_snat_address,
         change_forward_mode, change_egress_interface, switch_backend, turn_on_random_fully,
         rename_host_interface, rename_inner_interface, drop_default_route]
