# SPDX-License-Identifier: GPL-3.0-or-later
"""linuxnet.netns.netns_info on the article's topology built by the role (both backends):
veth peers resolved to the namespace and name of the other end, addresses, routes, our rules
in the backend that holds them and none in the other, conntrack counts after a DNAT'ed
connection; read only (check mode gives the same, nothing moves); a missing namespace is a
clear failure."""
import pytest

from tests.support import harness
from tests.support import role_lab
from tests.support import traffic

pytestmark = pytest.mark.controller_only


@pytest.mark.parametrize('backend', ['iptables', 'nftables'])
def test_gathers_the_topology_the_role_built(tmp_path, backend):
    lab = role_lab.RoleLab(tmp_path, tag='f')
    inner = lab.inner_name('i')
    listener = None
    try:
        run = lab.run({'netns_nat_backend': backend, 'netns_nat_namespaces': [{
            'name': inner, 'host_interface': 'veth1', 'host_address': '10.78.0.1/24', 'inner_interface': 'veth2',
            'inner_address': '10.78.0.2/24', 'port_forwards': [{'published_port': 8080, 'target_port': 80}]}]})
        assert run.rc == 0, run.output
        listener = traffic.start_listener(inner, 'inner', [80])
        assert traffic.connect(lab.outside, lab.HOST_ADDRESS, 8080) == 'inner %s' % lab.OUTSIDE_ADDRESS
        before = lab.snapshot()

        result = harness.run_module('netns_info', {'namespaces': [inner]}, netns=lab.host)
        assert result['changed'] is False and result['commands'] == [], result
        host, inside = result['namespaces']
        assert (host['name'], inside['name']) == (None, inner)
        links = dict((link['name'], link) for link in host['links'])
        assert links['veth1']['kind'] == 'veth' and links['veth1']['up'] is True
        assert (links['veth1']['peer']['namespace'], links['veth1']['peer']['name']) == (inner, 'veth2')
        # the article's host2 end was not gathered: neither its namespace nor its name is known
        assert (links['eth0']['peer']['namespace'], links['eth0']['peer']['name']) == (None, None)
        inner_links = dict((link['name'], link) for link in inside['links'])
        assert inner_links['veth2']['peer']['name'] == 'veth1'  # in the module's own namespace
        assert host['addresses']['veth1'] == ['10.78.0.1/24'] and inside['addresses']['veth2'] == ['10.78.0.2/24']
        assert 'default via 10.78.0.1 dev veth2 proto static metric 0' in inside['routes']
        other = 'nftables' if backend == 'iptables' else 'iptables'
        assert host['rules'][other] == [], host['rules']
        ours = host['rules'][backend]
        assert any('8080' in line and '10.78.0.2' in line for line in ours), ours
        assert any('lnt:isolate' in line for line in ours), ours
        assert inside['rules'] == {'iptables': [], 'nftables': []}
        assert host['conntrack']['dnat'] >= 1 and host['conntrack']['entries'] >= host['conntrack']['dnat']

        preview = harness.run_module('netns_info', {'namespaces': [inner], 'conntrack': False}, netns=lab.host,
                                     check=True)
        assert [ns['links'] for ns in preview['namespaces']] == [host['links'], inside['links']]
        assert 'conntrack' not in preview['namespaces'][0]
        assert lab.snapshot() == before
    finally:
        if listener is not None:
            traffic.stop(listener)
        lab.close()


def test_a_missing_namespace_is_a_clear_failure(netns):
    host = netns('fm')
    result = harness.run_module('netns_info', {'namespaces': ['lnt-no-such-ns']}, netns=host)
    assert result.get('failed') and "network namespace 'lnt-no-such-ns' does not exist" in result['msg'], result
