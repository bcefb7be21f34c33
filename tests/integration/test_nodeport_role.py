# SPDX-License-Identifier: GPL-3.0-or-later
"""NodePort to remote endpoints (netns_nat_services) with the netns_nat role, proven by packets.

A small cluster of namespaces, every name unique:

    client  eth0 172.31.0.10/24, default via node1
    node1   ext0 172.31.0.1/24 (towards the client), eth0 192.168.1.11/24 (cluster LAN);
            routes the pod networks via node2 and node3; publishes :30080 (the role, services)
    node2   eth0 192.168.1.12/24, default via node1; pod namespace 10.244.2.10 (the role)
    node3   eth0 192.168.1.13/24, default via node1; pod namespace 10.244.3.10 (the role)

The cluster LAN is a bridge in a switch namespace. Every node's FORWARD policy is DROP
(netns_nat_forward_policy), so whatever gets through was accepted by a rule of ours.

On both backends: N connections from the client to node1:30080 are spread over the two pods
(random: both get a share; round robin: exactly half each), every pod saw node1's address
(source_nat masquerade) or the client's own (source_nat none, the nodes route the client
through node1); client-IP affinity sends every connection to one pod; the flows node1 SNATs
are only the DNAT'ed ones (a flow an administrator lets through node1 to a pod directly keeps
its source); a second run reports
no change; a pod's own unpublished port is closed under DROP; absent gives every node back.
"""
import collections

import pytest

from tests.support import harness
from tests.support import role_lab
from tests.support import traffic

pytestmark = pytest.mark.controller_only

CLIENT, NODE1_EXT, NODE1 = '172.31.0.10', '172.31.0.1', '192.168.1.11'
NODES = {'node2': ('192.168.1.12', 2), 'node3': ('192.168.1.13', 3)}
PORT = 30080
CONNECTIONS = 24


class Cluster(object):
    def __init__(self, workdir):
        self.workdir = str(workdir)
        self.made, self.pods, self.listeners = [], {}, []
        self.client = self._namespace('npc')
        self.switch = self._namespace('nps')
        self.node1 = self._namespace('np1')
        self.nodes = {'node1': self.node1}
        harness.sh(['ip', '-n', self.switch, 'link', 'add', 'br0', 'type', 'bridge'])
        harness.sh(['ip', '-n', self.switch, 'link', 'set', 'br0', 'up'])
        harness.wire(self.node1, 'ext0', NODE1_EXT + '/24', self.client, 'eth0', CLIENT + '/24')
        harness.sh(['ip', '-n', self.client, 'route', 'add', 'default', 'via', NODE1_EXT])
        self._plug(self.node1, NODE1, 'p1')
        for name, (address, net) in sorted(NODES.items()):
            ns = self._namespace('np%d' % net)
            self.nodes[name] = ns
            self._plug(ns, address, 'p%d' % net)
            harness.sh(['ip', '-n', ns, 'route', 'add', 'default', 'via', NODE1])
            harness.sh(['ip', '-n', self.node1, 'route', 'add', '10.244.%d.0/24' % net, 'via', address])
            self.pods[name] = harness.unique_name('pod%d' % net)
        hosts = dict((name, {'ansible_netns_name': ns}) for name, ns in self.nodes.items())
        self.inventory = role_lab.write_inventory('%s/inventory.json' % self.workdir, hosts,
                                                  {'netns_nat_forward_policy': 'drop'})
        self.pristine = self.snapshot()

    def _namespace(self, tag):
        return harness.add_netns(tag, self.made)

    def _plug(self, ns, address, port_name):
        """ns's eth0 on the cluster bridge."""
        harness.sh(['ip', '-n', ns, 'link', 'add', 'eth0', 'type', 'veth', 'peer', 'name', port_name,
                    'netns', self.switch])
        harness.sh(['ip', '-n', self.switch, 'link', 'set', port_name, 'master', 'br0', 'up'])
        harness.sh(['ip', '-n', ns, 'addr', 'add', address + '/24', 'dev', 'eth0'])
        harness.sh(['ip', '-n', ns, 'link', 'set', 'eth0', 'up'])

    def variables(self, backend, **service):
        """Host variables per node: node1 publishes the service, node2/node3 hold a pod each."""
        web = {'name': 'web', 'published_port': PORT, 'egress_interface': 'eth0',
               'endpoints': [{'address': '10.244.%d.10' % net, 'port': 80} for dummy, net in sorted(NODES.values())]}
        web.update(service)
        per_host = {'node1': {'netns_nat_backend': backend, 'netns_nat_namespaces': [], 'netns_nat_services': [web]}}
        for name, (dummy, net) in NODES.items():
            per_host[name] = {'netns_nat_backend': backend, 'netns_nat_namespaces': [{
                'name': self.pods[name], 'host_interface': 'vpod', 'host_address': '10.244.%d.1/24' % net,
                'inner_interface': 'eth0', 'inner_address': '10.244.%d.10/24' % net,
                'allow_inbound': [{'protocol': 'tcp', 'port': 80}]}]}
        return per_host

    def apply(self, backend, state=None, **service):
        hosts = dict((name, dict(self.variables(backend, **service)[name], ansible_netns_name=ns))
                     for name, ns in self.nodes.items())
        if state:
            for host in hosts.values():
                host['netns_nat_state'] = state
        role_lab.write_inventory(self.inventory, hosts, {'netns_nat_forward_policy': 'drop'})
        run = role_lab.run_playbook(self.inventory, self.workdir)
        assert run.rc == 0, run.output
        return run

    def listen(self):
        self.stop()
        self.listeners = [traffic.start_listener(self.pods[name], name, [80, 81]) for name in sorted(self.pods)]

    def stop(self):
        for proc in self.listeners:
            traffic.stop(proc)
        self.listeners = []

    def spread(self, count=CONNECTIONS, source=None):
        """{(pod, address it saw): connections} of ``count`` connections to node1:30080."""
        answers = [traffic.connect(source or self.client, NODE1_EXT, PORT) for dummy in range(count)]
        return collections.Counter(tuple(answer.split()) for answer in answers)

    def snapshot(self):
        return role_lab.settled_snapshot(self.made + list(self.pods.values()))

    def close(self):
        self.stop()
        for ns in self.nodes.values():
            harness.remove_forwarding_record(ns)
        for name in list(self.pods.values()) + self.made:
            harness.delete_netns(name)


@pytest.fixture
def cluster(tmp_path):
    lab = Cluster(tmp_path)
    try:
        yield lab
    finally:
        lab.close()


def conntrack_of(ns):
    """node1's conntrack entries of the service port: (original src, reply src, reply dst)."""
    out = harness.nsexec(ns, ['conntrack', '-L', '-p', 'tcp', '--orig-port-dst', str(PORT)], check=False)
    entries = []
    for line in out.splitlines():
        fields = [part.split('=', 1) for part in line.split() if '=' in part]
        src = [value for key, value in fields if key == 'src']
        dst = [value for key, value in fields if key == 'dst']
        if len(src) >= 2 and len(dst) >= 2:
            entries.append((src[0], src[1], dst[1]))
    return entries


@pytest.mark.parametrize('backend', ['iptables', 'nftables'])
def test_nodeport_spreads_over_remote_endpoints_and_snats_only_those_flows(cluster, backend):
    first = cluster.apply(backend)
    assert first.recap("node1")["changed"] > 0, first.output
    again = cluster.apply(backend)
    for host in cluster.nodes:
        assert again.recap(host)['changed'] == 0, (host, again.changed_tasks(host))
    cluster.listen()

    # random: both pods get a share; each saw node1's cluster address, never the client's
    seen = cluster.spread()
    assert sum(seen.values()) == CONNECTIONS, seen
    assert set(seen) == {('node2', NODE1), ('node3', NODE1)}, seen
    assert min(seen.values()) >= 3, seen  # P(<= 2 of 24 at 1/2) is 2e-5 per pod
    # conntrack on node1: client -> node1:30080, reply from a pod to node1's cluster address
    entries = conntrack_of(cluster.node1)
    assert entries and all(orig == CLIENT and reply_dst == NODE1 for orig, dummy, reply_dst in entries), entries
    assert {reply_src for dummy, reply_src, dummy2 in entries} == {'10.244.2.10', '10.244.3.10'}

    # only DNAT'ed flows are translated: once the administrator lets the client reach a pod
    # directly through node1 (an accept in the admin chain LNT-USER), that routed flow keeps
    # its own address (allow_inbound lets it in on the pod's node)
    admin_accept = ['-s', CLIENT, '-d', '10.244.2.10', '-p', 'tcp', '--dport', '80', '-j', 'ACCEPT']
    harness.nsexec(cluster.node1, ['iptables', '-w', '-I', 'LNT-USER'] + admin_accept)
    assert traffic.connect(cluster.client, '10.244.2.10', 80) == 'node2 %s' % CLIENT
    harness.nsexec(cluster.node1, ['iptables', '-w', '-D', 'LNT-USER'] + admin_accept)
    # the pod's other port stays closed under DROP (allow_inbound names port 80 only)
    assert traffic.connect(cluster.client, '10.244.2.10', 81, timeout=0.7).startswith('unreachable')

    # round robin: exactly in turn
    cluster.apply(backend, balance='round_robin')
    seen = cluster.spread()
    assert seen == {('node2', NODE1): CONNECTIONS // 2, ('node3', NODE1): CONNECTIONS // 2}, seen

    # keep the client's address: the nodes route the client through node1, which un-DNATs
    cluster.apply(backend, source_nat='none')
    seen = cluster.spread()
    assert set(seen) == {('node2', CLIENT), ('node3', CLIENT)}, seen

    # client-IP affinity: one client, one pod
    cluster.apply(backend, affinity='client_ip', affinity_timeout=600)
    seen = cluster.spread(12)
    assert len(seen) == 1 and sum(seen.values()) == 12, seen

    # one endpoint left: every new flow goes there
    cluster.apply(backend, endpoints=[{'address': '10.244.3.10', 'port': 80}])
    assert set(cluster.spread(6)) == {('node3', NODE1)}

    cluster.stop()
    cluster.apply(backend, state='absent')
    role_lab.assert_same(cluster.snapshot(), cluster.pristine)


def test_services_bad_input_is_refused_before_any_change(cluster):
    run = role_lab.run_playbook(cluster.inventory, cluster.workdir, extra_vars_file=None, extra_vars={
        'netns_nat_services': [
            {'name': 'Web', 'published_port': PORT, 'endpoints': []},
            {'name': 'api', 'published_port': 30081, 'endpoints': [{'address': '10.244.2.300'}],
             'source_nat': 'snat'},
        ]})
    assert run.rc != 0
    text = run.output
    for expected in ('netns_nat_services[0].name="Web"', 'netns_nat_services[0].endpoints: must be a non-empty list',
                     'netns_nat_services[1].endpoints[0].address="10.244.2.300"',
                     'netns_nat_services[1].snat_address=""'):
        assert expected in text, expected
    role_lab.assert_same(cluster.snapshot(), cluster.pristine)
