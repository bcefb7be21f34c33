# -*- coding: utf-8 -*-
# Copyright (c) linuxnet.netns contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""A Mermaid flowchart of a topology as gathered by linuxnet.netns.netns_info: one box per
namespace with its interfaces and addresses, a line per veth pair, and the NAT of the
netns_nat role (netns_nat_applied) as dotted arrows: source NAT out of the egress interface,
published ports into their targets, services (NodePorts) to their endpoints."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re


def _node_id(namespace, ifname):
    return re.sub(r'[^A-Za-z0-9_]', '_', 'n_%s_%s' % (namespace or 'host', ifname))


def _label(text):
    return text.replace('"', "'")


def netns_mermaid(namespaces, host='host', applied=None):
    """Mermaid ``flowchart LR`` text. ``namespaces``: the RV namespaces of netns_info (the
    NAT host itself with name null); ``host``: its label; ``applied``: netns_nat_applied."""
    lines = ['flowchart LR']
    edges = []
    drawn = set()
    for report in namespaces:
        name = report.get('name')
        title = host if name is None else name
        lines.append('  subgraph %s["%s"]' % (_node_id(name, ''), _label(title)))
        for link in report.get('links', []):
            if link['name'] == 'lo':
                continue
            addresses = report.get('addresses', {}).get(link['name'], [])
            text = ' '.join([link['name']] + addresses) + ('' if link.get('up') else ' (down)')
            lines.append('    %s["%s"]' % (_node_id(name, link['name']), _label(text)))
            peer = link.get('peer')
            if peer and peer.get('name'):
                pair = frozenset([(name, link['name']), (peer['namespace'], peer['name'])])
                if pair not in drawn:
                    drawn.add(pair)
                    ends = (_node_id(name, link['name']), _node_id(peer['namespace'], peer['name']))
                    edges.append('  %s ---|veth| %s' % ends)
        lines.append('  end')
    lines.extend(edges)
    lines.extend(_nat_edges(applied or {}))
    return '\n'.join(lines) + '\n'


def _nat_edges(applied):
    edges = []
    for ns in applied.get('namespaces', []):
        inner = _node_id(ns['name'], ns['inner_interface'])
        egress = _node_id(None, ns['egress_interface'])
        if ns.get('source_nat') == 'masquerade':
            label = 'MASQUERADE %s out of %s' % (ns['subnet'], ns['egress_interface'])
            edges.append('  %s -. "%s" .-> %s' % (inner, label, egress))
        elif ns.get('source_nat') == 'snat':
            edges.append('  %s -. "SNAT %s to %s" .-> %s' % (inner, ns['subnet'], ns['snat_address'], egress))
        for forward in ns.get('port_forwards', []):
            edges.append('  %s -. "DNAT %s %s to %s:%s" .-> %s' % (
                egress, forward['protocol'], forward['published_port'], forward['target_address'],
                forward['target_port'], inner))
    edges.extend(_service_edges(applied.get('services', [])))
    return edges


def _service_edges(services):
    """A service (NodePort): a node per endpoint, outside every namespace box (it may be on
    another host), and a dotted arrow per endpoint from where the flows leave this host."""
    edges = []
    for svc in services:
        start = _node_id(None, svc['egress_interface'] if svc.get('egress_interface') else '')
        share = '1/%d' % len(svc['endpoints'])
        source = {'masquerade': 'MASQUERADE', 'snat': 'SNAT to %s' % svc.get('snat_address'),
                  'none': 'client address kept'}[svc['source_nat']]
        for index, endpoint in enumerate(svc['endpoints']):
            node = _node_id('svc_%s' % svc['name'], str(index))
            edges.append('  %s(["%s %s:%s"])' % (node, _label(svc['name']), endpoint['address'], endpoint['port']))
            edges.append('  %s -. "DNAT %s %s (%s %s), %s" .-> %s' % (
                start, svc['protocol'], svc['published_port'], svc['balance'].replace('_', ' '), share, source, node))
    return edges


class FilterModule(object):
    """linuxnet.netns diagram filters."""

    def filters(self):
        return {'netns_mermaid': netns_mermaid}
