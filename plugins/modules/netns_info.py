#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) linuxnet.netns contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
---
module: netns_info
short_description: Gather the links, addresses, routes, NAT rules and conntrack counts of network namespaces
version_added: 0.2.0
description:
  - Reads, for the namespace the module runs in and for every namespace of O(namespaces), the
    links (with the namespace and name of each veth's peer, when the peer lives in one of the
    namespaces gathered), the addresses (IPv6 link-local ones left out), the routes of the main
    table, the rules of this collection in each NAT backend (iptables chains C(LNT-*), nft table
    C(inet linuxnet_netns)) and how many conntrack entries there are, and how many of them are
    source or destination translated.
  - The source for summaries and diagrams of a topology built with M(linuxnet.netns.netns_nat)
    or the state modules. Read-only; the module never changes anything.
  - Links, addresses and routes are read in-process through netlink (no C(ip) processes).
author:
  - linuxnet.netns contributors (@linuxnet)
requirements:
  - pyroute2 >= 0.7.2 on the managed host for O(conntrack=true) (ctnetlink)
  - iptables-save and nft for O(rules=true) (either may be missing)
attributes:
  check_mode:
    support: full
    description: Read-only; returns the same result in check mode.
  diff_mode:
    support: none
    description: Read-only; nothing changes, so there is no diff.
  platform:
    platforms: [linux]
    support: full
    description: Linux network namespaces only.
options:
  namespaces:
    description:
      - Names of namespaces (under C(/run/netns)) to gather besides the one the module runs in.
    type: list
    elements: str
    default: []
  own:
    description: Also gather the namespace the module runs in (reported with RV(namespaces[].name) null).
    type: bool
    default: true
  rules:
    description: Gather the rules of this collection in each backend.
    type: bool
    default: true
  conntrack:
    description: Count the conntrack entries (needs pyroute2).
    type: bool
    default: true
notes:
  - Needs root (CAP_SYS_ADMIN to enter namespaces, CAP_NET_ADMIN to read rules and conntrack).
seealso:
  - module: linuxnet.netns.conntrack_info
'''

EXAMPLES = r'''
- name: What the article's host and its namespace hold
  linuxnet.netns.netns_info:
    namespaces: [myspace]
  register: info

- name: Which veth end of the host leads into which namespace
  ansible.builtin.debug:
    msg: "{{ item.name }} -> {{ item.peer.name }} in {{ item.peer.namespace }}"
  loop: "{{ info.namespaces[0].links | selectattr('peer', 'defined') }}"
'''

RETURN = r'''
namespaces:
  description: One entry per namespace gathered, the module's own first (when O(own=true)).
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: The namespace's name, or null for the one the module runs in.
      type: str
    links:
      description:
        - Every link, by ifindex, with C(name), C(index), C(kind), C(up), C(mtu) and for a veth
          C(peer) (C(index), C(namespace) and C(name) of the other end; C(namespace) and C(name)
          are null when the other end is in a namespace that was not gathered).
      type: list
      elements: dict
      sample: [{name: veth1, index: 7, kind: veth, up: true, mtu: 1500,
                peer: {index: 2, namespace: myspace, name: veth2}}]
    addresses:
      description: Link name -> its addresses with prefix length.
      type: dict
      sample: {veth1: [192.168.45.2/24]}
    routes:
      description: The routes of the main table, as C(ip route) shows them (metric and proto spelled out).
      type: list
      elements: str
      sample: [default via 192.168.45.2 dev veth2 proto static metric 0]
    rules:
      description: Our rules per backend (C(iptables), C(nftables)), as display lines; with O(rules=true).
      type: dict
    conntrack:
      description: C(entries), C(snat) and C(dnat) counts of the conntrack table; with O(conntrack=true).
      type: dict
      sample: {entries: 3, snat: 1, dnat: 2}
commands:
  description: Always empty; the module changes nothing.
  returned: always
  type: list
  elements: str
  sample: []
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.linuxnet.netns.plugins.module_utils.common import COMMAND_ENVIRON, fail_from_exception
from ansible_collections.linuxnet.netns.plugins.module_utils.conntrack import list_entries
from ansible_collections.linuxnet.netns.plugins.module_utils.netns_info import gather
from ansible_collections.linuxnet.netns.plugins.module_utils.netns_session import (
    NamespaceMissing,
    namespace_exists,
    require_pyroute2,
)
from ansible_collections.linuxnet.netns.plugins.module_utils.nscmd import NetnsRunner
from ansible_collections.linuxnet.netns.plugins.module_utils.validation import check_netns_name


def main():
    module = AnsibleModule(
        argument_spec=dict(
            namespaces=dict(type='list', elements='str', default=[]),
            own=dict(type='bool', default=True),
            rules=dict(type='bool', default=True),
            conntrack=dict(type='bool', default=True),
        ),
        supports_check_mode=True,
    )
    module.run_command_environ_update = COMMAND_ENVIRON
    params = module.params
    if params['conntrack']:
        require_pyroute2(module)
    names = ([None] if params['own'] else []) + list(params['namespaces'])
    try:
        for index, name in enumerate(params['namespaces']):
            check_netns_name('namespaces[%d]' % index, name)
            if not namespace_exists(name):
                raise NamespaceMissing(name)
        reports = gather(names, lambda name: NetnsRunner(module, name), with_rules=params['rules'],
                         with_conntrack=params['conntrack'], list_conntrack=list_entries)
    except Exception as exc:  # ValidationError, NamespaceMissing: clear message; the rest with traceback
        fail_from_exception(module, exc)
    module.exit_json(changed=False, commands=[], namespaces=reports)


if __name__ == '__main__':
    main()
