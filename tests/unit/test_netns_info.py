# SPDX-License-Identifier: GPL-3.0-or-later
"""The pure parts of netns_info: veth peers named from the reports gathered, and the
conntrack counts."""
from ansible_collections.linuxnet.netns.plugins.module_utils import netns_info
from ansible_collections.linuxnet.netns.plugins.module_utils.links import Link


def test_a_veth_peer_is_named_from_the_namespace_it_lives_in():
    host_links = [Link('eth0', 2, kind='veth', up=True, peer_index=2, peer_netnsid=9),
                  Link('veth1', 3, kind='veth', up=True, peer_index=2, peer_netnsid=4),
                  Link('v-a', 5, kind='veth', up=True, peer_index=6, peer_netnsid=None)]
    inner_links = [Link('veth2', 2, kind='veth', up=True, peer_index=3, peer_netnsid=0)]
    reports = [{'name': None, 'links': [netns_info.link_report(link, {4: 'ns1'}) for link in host_links]},
               {'name': 'ns1', 'links': [netns_info.link_report(link, {0: None}) for link in inner_links]}]
    reports[0]['links'].append(netns_info.link_report(Link('v-b', 6, kind='veth', peer_index=5), {}))
    netns_info.resolve_peers([None, 'ns1'], reports)
    peers = dict((link['name'], link['peer']) for link in reports[0]['links'])
    assert peers['eth0'] == {'index': 2, 'namespace': None, 'name': None}  # in a namespace not gathered
    assert peers['veth1'] == {'index': 2, 'namespace': 'ns1', 'name': 'veth2'}
    assert peers['v-a'] == {'index': 6, 'namespace': None, 'name': 'v-b'}  # both ends here
    assert reports[1]['links'][0]['peer'] == {'index': 3, 'namespace': None, 'name': 'veth1'}


def test_conntrack_counts_by_translation():
    entries = [{'status': ['SRC_NAT', 'CONFIRMED']}, {'status': ['DST_NAT']}, {'status': ['SRC_NAT', 'DST_NAT']},
               {'status': ['CONFIRMED']}]
    assert netns_info.conntrack_counts(entries) == {'entries': 4, 'snat': 2, 'dnat': 2}
