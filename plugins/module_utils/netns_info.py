# -*- coding: utf-8 -*-
# Copyright (c) linuxnet.netns contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""What the netns_info module reports of a namespace: its links (veth peers resolved to the
namespace they live in, among those gathered), addresses, routes, the rules of ours in each
backend and the conntrack entries by translation. Read only; the source of topology
summaries and diagrams."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os

from ansible_collections.linuxnet.netns.plugins.module_utils import nat_iptables as ipt
from ansible_collections.linuxnet.netns.plugins.module_utils import nat_nftables as nft
from ansible_collections.linuxnet.netns.plugins.module_utils.links import netnsid_of, read_links, route_socket
from ansible_collections.linuxnet.netns.plugins.module_utils.netns_session import entered, namespace_path
from ansible_collections.linuxnet.netns.plugins.module_utils.routes import MAIN_TABLE, read_namespace_state

# Where a veth's peer lives, before the names are filled in: this namespace, or one that was
# not gathered (whose name cannot be told from here).
SAME, UNKNOWN = '.', '?'


def gather(names, runner_for, with_rules=True, with_conntrack=True, list_conntrack=None):
    """One report per namespace of ``names`` (None: the module's own), in that order."""
    reports = []
    # an open fd of each namespace gathered (the module's own too), to tell its id from the others
    fds = {}
    try:
        for name in names:
            fds[name] = os.open(namespace_path(name) if name else '/proc/thread-self/ns/net', os.O_RDONLY)
        for name in names:
            with entered(name):
                reports.append(read_one(name, fds))
    finally:
        for fd in fds.values():
            os.close(fd)
    resolve_peers(names, reports)
    for report in reports:
        if with_rules:
            report['rules'] = our_rules(runner_for(report['name']))
        if with_conntrack:
            report['conntrack'] = conntrack_counts(list_conntrack(report['name']))
    return reports


def read_one(name, fds):
    """Links, addresses and routes of the namespace this thread is in now; the namespace of a
    veth peer is told by the id each gathered namespace (``fds``: name -> open fd) has here."""
    state = read_namespace_state(name)
    with route_socket() as rtnl:
        links = read_links(rtnl)
        ids = {}
        for other, fd in fds.items():
            nsid = netnsid_of(fd, rtnl) if other != name else None
            if nsid is not None:
                ids[nsid] = other
    addresses = {}
    for address, device in state.addresses:
        if not address.ip.is_link_local:
            addresses.setdefault(device, []).append(str(address))
    return {
        'name': name,
        'links': [link_report(link, ids) for link in sorted(links, key=lambda link: link.index)],
        'addresses': dict((device, sorted(values)) for device, values in addresses.items()),
        'routes': [route.text() for route in state.routes
                   if route.table == MAIN_TABLE and not (route.dest.version == 6 and route.dest.is_link_local)],
    }


def link_report(link, ids):
    report = {'name': link.name, 'index': link.index, 'kind': link.kind, 'up': link.up, 'mtu': link.mtu}
    if link.is_veth:
        # the peer's namespace: this one when the kernel gives no namespace id for it
        if link.peer_netnsid is None:
            where = SAME
        else:
            where = ids.get(link.peer_netnsid, UNKNOWN)
        report['peer'] = {'index': link.peer_index, 'namespace': where}
    return report


def resolve_peers(names, reports):
    """Give each veth the name of its peer where both ends were gathered ('.' meant: the
    peer is in the same namespace)."""
    by_index = dict(((report['name'], link['index']), link['name']) for report in reports for link in report['links'])
    for report in reports:
        for link in report['links']:
            peer = link.get('peer')
            if peer is None:
                continue
            if peer['namespace'] == UNKNOWN:
                peer.update(namespace=None, name=None)
                continue
            if peer['namespace'] == SAME:
                peer['namespace'] = report['name']
            peer['name'] = by_index.get((peer['namespace'], peer['index']))


def our_rules(runner):
    """Display lines of the rules of ours in each backend ([] where there are none)."""
    rules = {'iptables': [], 'nftables': []}
    for key, view in sorted(ipt.read_views(runner).items(), key=ipt.view_order):
        rules['iptables'].extend(ipt.current_lines(view))
    if nft.list_chains(runner) is not None:
        rules['nftables'] = nft.current_lines(nft.read_table(runner))
    return rules


def conntrack_counts(entries):
    """How many conntrack entries, and how many of them are source/destination translated."""
    return {
        'entries': len(entries),
        'snat': sum(1 for entry in entries if 'SRC_NAT' in entry['status']),
        'dnat': sum(1 for entry in entries if 'DST_NAT' in entry['status']),
    }
