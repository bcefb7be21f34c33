# SPDX-License-Identifier: GPL-3.0-or-later
"""The Mermaid diagram of a gathered topology: boxes, veth lines (each pair once), NAT arrows."""
from ansible_collections.linuxnet.netns.plugins.filter.netns_diagram import FilterModule, netns_mermaid

GATHERED = [
    {'name': None, 'links': [
        {'name': 'lo', 'up': True},
        {'name': 'eth0', 'up': True, 'peer': {'index': 2, 'namespace': None, 'name': None}},
        {'name': 'veth1', 'up': True, 'peer': {'index': 2, 'namespace': 'myspace', 'name': 'veth2'}}],
     'addresses': {'eth0': ['192.168.1.32/24'], 'veth1': ['192.168.45.2/24']}},
    {'name': 'myspace', 'links': [
        {'name': 'veth2', 'up': True, 'peer': {'index': 3, 'namespace': None, 'name': 'veth1'}}],
     'addresses': {'veth2': ['192.168.45.3/24']}},
]
APPLIED = {'namespaces': [{'name': 'myspace', 'inner_interface': 'veth2', 'egress_interface': 'eth0',
                           'subnet': '192.168.45.0/24', 'source_nat': 'masquerade', 'snat_address': None,
                           'port_forwards': [{'protocol': 'tcp', 'published_port': '8080',
                                              'target_address': '192.168.45.3', 'target_port': '80'}]}]}


def test_the_article_as_a_diagram():
    assert netns_mermaid(GATHERED, host='host1', applied=APPLIED) == '\n'.join([
        'flowchart LR',
        '  subgraph n_host_["host1"]',
        '    n_host_eth0["eth0 192.168.1.32/24"]',
        '    n_host_veth1["veth1 192.168.45.2/24"]',
        '  end',
        '  subgraph n_myspace_["myspace"]',
        '    n_myspace_veth2["veth2 192.168.45.3/24"]',
        '  end',
        '  n_host_veth1 ---|veth| n_myspace_veth2',
        '  n_myspace_veth2 -. "MASQUERADE 192.168.45.0/24 out of eth0" .-> n_host_eth0',
        '  n_host_eth0 -. "DNAT tcp 8080 to 192.168.45.3:80" .-> n_myspace_veth2',
    ]) + '\n'


def test_without_the_role_fact_only_the_links_are_drawn():
    text = netns_mermaid(GATHERED)
    assert '["host"]' in text and 'DNAT' not in text and text.count('---|veth|') == 1


def test_the_filter_is_registered():
    assert FilterModule().filters()['netns_mermaid'] is netns_mermaid


def test_a_service_draws_one_arrow_per_remote_endpoint():
    applied = {'namespaces': [], 'services': [
        {'name': 'web', 'protocol': 'tcp', 'published_port': '30080', 'egress_interface': None,
         'balance': 'round_robin', 'source_nat': 'none',
         'endpoints': [{'address': '10.244.2.10', 'port': 80}, {'address': '10.244.3.10', 'port': 8080}]}]}
    text = netns_mermaid(GATHERED[:1], host='node1', applied=applied)
    assert text.endswith('\n'.join([
        '  n_svc_web_0(["web 10.244.2.10:80"])',
        '  n_host_ -. "DNAT tcp 30080 (round robin 1/2), client address kept" .-> n_svc_web_0',
        '  n_svc_web_1(["web 10.244.3.10:8080"])',
        '  n_host_ -. "DNAT tcp 30080 (round robin 1/2), client address kept" .-> n_svc_web_1',
    ]) + '\n')
