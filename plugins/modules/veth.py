#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) linuxnet.netns contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
---
module: veth
short_description: Manage veth pairs whose ends live in chosen network namespaces
version_added: 0.1.0
description:
  - Creates, updates and removes virtual Ethernet (veth) pairs. Each end can live in a named
    network namespace or in the namespace the module runs in.
  - Manages IPv4 and IPv6 addresses on either end, the MTU (the same on both ends) and the
    administrative state (both ends up or both down).
  - IPv6 addresses are added without duplicate address detection (C(nodad)), so they are usable
    at once.
  - An existing pair is compared with what is wanted and only the difference is applied. An
    existing link whose peer is not the requested one, whose peer lives in another namespace, or a
    requested name taken by a link that is not a veth, makes the module fail with a message
    saying so, unless O(recreate=true). A pair whose peer was left in a namespace that has no
    name any more (deleted with C(ip netns delete) while a process keeps it alive) is replaced
    without O(recreate), since nothing anyone can still address is in the way.
  - Works in-process through netlink; many pairs in one call through O(pairs) cost one netlink
    socket per namespace with many requests per message, not one process per pair, and pairs
    deleted together in a namespace go in one kernel request.
  - If the call fails half-way, the pairs and addresses it had created are removed again.
author:
  - linuxnet.netns contributors (@linuxnet)
extends_documentation_fragment:
  - linuxnet.netns.netns
  - linuxnet.netns.netns.ATTRIBUTES
options:
  pairs:
    description:
      - Several veth pairs in one call. Mutually exclusive with O(name), O(peer), O(addresses)
        and O(peer_addresses).
      - The top-level options O(namespace), O(peer_namespace), O(mtu), O(up), O(state),
        O(purge_addresses) and O(recreate) are the defaults for items that do not set them.
    type: list
    elements: dict
    suboptions:
      name:
        description: Name of the end in O(pairs[].namespace).
        type: str
        required: true
      peer:
        description: Name of the other end. Required when the pair is present.
        type: str
      namespace:
        description: Namespace of the O(pairs[].name) end; default is the module's own.
        type: str
      peer_namespace:
        description: Namespace of the O(pairs[].peer) end; default is O(pairs[].namespace).
        type: str
      addresses:
        description: Addresses with prefix length on the O(pairs[].name) end; unset means not managed.
        type: list
        elements: str
      peer_addresses:
        description: Addresses with prefix length on the O(pairs[].peer) end; unset means not managed.
        type: list
        elements: str
      mtu:
        description: MTU of both ends; unset means left as it is (1500 for a new pair).
        type: int
      up:
        description: Whether both ends are up.
        type: bool
      state:
        description: Whether the pair should exist.
        type: str
        choices: [present, absent]
      purge_addresses:
        description: Remove addresses not listed (IPv6 link-local addresses are always kept).
        type: bool
      recreate:
        description: Delete and recreate links that conflict with the requested pair.
        type: bool
  name:
    description:
      - Name of the end that lives in O(namespace), at most 15 bytes.
      - With O(state=absent), this link is deleted (which deletes its peer too).
    type: str
  peer:
    description:
      - Name of the other end, which lives in O(peer_namespace). Required when O(state=present).
    type: str
  peer_namespace:
    description:
      - Namespace of the O(peer) end. Default is O(namespace) (both ends in one namespace).
    type: str
  addresses:
    description:
      - Addresses with prefix length (C(192.168.45.2/24), C(fd42::1/64)) on the O(name) end.
      - Compared as a set. When unset, the addresses of this end are not managed.
      - An address listed with another prefix length than the one present replaces it.
    type: list
    elements: str
  peer_addresses:
    description:
      - Addresses with prefix length on the O(peer) end, as for O(addresses).
    type: list
    elements: str
  mtu:
    description:
      - MTU of both ends, 68 to 65535 (at least 1280 when an end has IPv6 addresses).
      - When unset, the MTU is left as it is (a new pair gets the kernel default 1500).
    type: int
  up:
    description:
      - V(true) brings both ends up, V(false) sets both down.
    type: bool
    default: true
  state:
    description:
      - V(present) creates or updates the pair, V(absent) deletes it.
    type: str
    choices: [present, absent]
    default: present
  purge_addresses:
    description:
      - Remove addresses that are not listed in O(addresses)/O(peer_addresses) from the ends whose
        list is set. IPv6 link-local addresses (C(fe80::/10)) are never removed.
    type: bool
    default: false
  recreate:
    description:
      - When the name is taken by a link that is not a veth, or the existing veth's peer has
        another name or lives in another namespace, V(false) fails with a message that names the
        conflict and V(true) deletes the conflicting links and creates the pair anew.
    type: bool
    default: false
notes:
  - A namespace that does not exist is an error, except in check mode (where a warning says that
    the pair is assumed to be created once the namespace exists) and for O(state=absent) (a missing
    namespace holds no pair).
seealso:
  - module: linuxnet.netns.netns
'''

EXAMPLES = r'''
- name: The article's pair - veth1 on the host side, veth2 inside myspace
  linuxnet.netns.veth:
    name: veth1
    peer: veth2
    peer_namespace: myspace
    addresses: [192.168.45.2/24]
    peer_addresses: [192.168.45.3/24]

- name: Many pairs in one call, host ends in namespace host1
  linuxnet.netns.veth:
    namespace: host1
    purge_addresses: true
    pairs:
      - name: veth-t1
        peer: eth0
        peer_namespace: tenant1
        addresses: [10.1.1.1/24, fd42:1::1/64]
        peer_addresses: [10.1.1.2/24, fd42:1::2/64]
      - name: veth-t2
        peer: eth0
        peer_namespace: tenant2
        addresses: [10.1.2.1/24]
        peer_addresses: [10.1.2.2/24]
        mtu: 9000

- name: Replace a pair whose peer was moved or renamed by hand
  linuxnet.netns.veth:
    namespace: host1
    name: veth-t1
    peer: eth0
    peer_namespace: tenant1
    recreate: true

- name: Delete a pair (deleting one end deletes both)
  linuxnet.netns.veth:
    namespace: host1
    name: veth-t2
    state: absent
'''

RETURN = r'''
pairs:
  description: One entry per pair of the call, in input order, with the state before and after.
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: Name of the first end.
      type: str
      sample: veth1
    peer:
      description: Name of the other end (null when not given for O(state=absent)).
      type: str
      sample: veth2
    namespace:
      description: Namespace of the first end (null is the module's own).
      type: str
      sample: host1
    peer_namespace:
      description: Namespace of the other end (null is the module's own).
      type: str
      sample: myspace
    state:
      description: The requested state.
      type: str
      sample: present
    changed:
      description: Whether this pair changed (in check mode, would change).
      type: bool
      sample: true
    before:
      description:
        - The pair as found (null if the first end did not exist). For a link that is not a veth,
          only O(name), O(namespace) and C(kind) are set.
        - Keys C(name), C(namespace), C(kind), C(peer), C(peer_namespace), C(mtu), C(peer_mtu),
          C(up), C(peer_up), C(addresses), C(peer_addresses).
      type: dict
      sample:
        name: veth1
        namespace: null
        kind: veth
        peer: veth2
        peer_namespace: myspace
        mtu: 1500
        peer_mtu: 1500
        up: true
        peer_up: true
        addresses: [192.168.45.2/24]
        peer_addresses: []
    after:
      description: The pair as it is after the call (in check mode, would be); null when absent.
      type: dict
      sample:
        name: veth1
        namespace: null
        kind: veth
        peer: veth2
        peer_namespace: myspace
        mtu: 1500
        peer_mtu: 1500
        up: true
        peer_up: true
        addresses: [192.168.45.2/24]
        peer_addresses: [192.168.45.3/24]
commands:
  description: The C(ip) commands an operator would have typed for the same change.
  returned: always
  type: list
  elements: str
  sample:
    - ip link add veth1 type veth peer name veth2 netns myspace
    - ip link set veth1 up
    - ip addr add 192.168.45.2/24 dev veth1
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.linuxnet.netns.plugins.module_utils import kind, veth_call as call


def main():
    kind.run_module(AnsibleModule(argument_spec=call.argument_spec(), supports_check_mode=True, **call.ARGUMENT_RULES), call)


if __name__ == '__main__':
    main()
