#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) linuxnet.netns contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: netns_route
short_description: Manage IPv4 and IPv6 routes inside a network namespace
version_added: 0.1.0
description:
  - Adds, replaces and removes routes in a network namespace through netlink,
    the declarative form of C(ip netns exec NAME ip route add default via GATEWAY).
  - One route is given through the top-level options, or many through O(routes) in one
    call (each namespace is read once, and its changes are sent in one netlink batch only
    when something in it changes).
  - A route is compared only on what was asked for; the kernel's protocol marker
    (C(proto static) for routes this module adds, C(proto kernel) for subnet routes of
    addresses), the scope and, when O(metric) is not set, the metric are never compared.
  - The kernel identifies a route by family, destination, table and metric. When such a
    route exists but its gateway or device differ from the request, it is replaced in
    place (its metric is kept when O(metric) is not set) and the result shows it before and
    after. Routes the kernel made for an address (C(proto kernel)) are never replaced; set a
    different O(metric) to add a route beside them.
  - Everything is validated before anything changes, including that the device exists
    and that the gateway lies in a connected subnet of the namespace. When a change fails
    half-way, the routes this call added, replaced or removed are put back.
author:
  - linuxnet.netns contributors (@linuxnet)
requirements:
  - Linux with network namespaces; no Python library beyond the standard one (routes are read and
    written through netlink messages the collection encodes itself)
extends_documentation_fragment:
  - linuxnet.netns.netns
  - linuxnet.netns.netns.ATTRIBUTES
options:
  namespace:
    description:
      - Namespace whose routing tables are managed.
      - With O(routes), the default for items that do not name one.
      - The namespace must exist; the module never creates it.
    type: str
  dest:
    description:
      - Destination network in CIDR form (host bits zero), for example V(10.1.0.0/24) or
        V(fd10:1::/64), or V(default) for the default route. A plain address is a host route.
      - Required unless O(routes) is given.
    type: str
  gateway:
    description:
      - Next hop address. Must be of the same family as O(dest) and lie in a connected
        subnet of the namespace (on O(device) when that is set), unless O(onlink=true).
    type: str
  device:
    description:
      - Outgoing interface; must exist in the namespace when O(state=present).
      - Without O(gateway), the route is a device route (scope link).
      - Without O(device), the kernel picks the interface whose subnet holds O(gateway),
        and the existing route's device is not compared.
    type: str
  metric:
    description:
      - Route metric (priority). When omitted, an existing route with any metric
        satisfies the request; a new route gets the kernel's default (0 for IPv4, 1024 for IPv6).
    type: int
  table:
    description:
      - Routing table number; when omitted, the main table (254).
    type: int
  family:
    description:
      - Address family. Inferred from O(dest) or O(gateway); needed only for
        O(dest=default) without O(gateway).
    type: str
    choices: [ipv4, ipv6]
  onlink:
    description:
      - Pretend the gateway is directly reachable on O(device) even though no connected
        subnet holds it (C(ip route ... onlink)); skips the connected-subnet check.
      - Needs both O(gateway) and O(device). Used when a route is created or replaced, not compared.
    type: bool
    default: false
  state:
    description:
      - V(present) makes sure the route exists as requested.
      - V(absent) removes every route with this destination and table (and this metric,
        gateway and device when given). A device that does not exist means nothing to remove.
      - With O(routes), the default for items that do not set it.
    type: str
    choices: [present, absent]
    default: present
  routes:
    description:
      - Several routes in one call; each item takes the top-level route options.
      - Mutually exclusive with the top-level route options (O(dest), O(gateway), O(device),
        O(metric), O(table), O(family), O(onlink)).
    type: list
    elements: dict
    suboptions:
      namespace:
        description: Namespace of this route (default O(namespace)).
        type: str
      dest:
        description: Destination network in CIDR form, or V(default).
        type: str
        required: true
      gateway:
        description: Next hop address.
        type: str
      device:
        description: Outgoing interface.
        type: str
      metric:
        description: Route metric (priority); compared only when set.
        type: int
      table:
        description: Routing table number; when omitted, the main table (254).
        type: int
      family:
        description: Address family, needed only for V(default) without gateway.
        type: str
        choices: [ipv4, ipv6]
      onlink:
        description: Skip the connected-subnet check for the gateway (needs gateway and device).
        type: bool
        default: false
      state:
        description: V(present) or V(absent) (default O(state)).
        type: str
        choices: [present, absent]
notes:
  - Multipath routes are reported with their next hops; a request with a single gateway
    replaces a multipath route of the same identity.
seealso:
  - module: linuxnet.netns.netns
  - module: linuxnet.netns.veth
'''

EXAMPLES = r'''
- name: Default route of the namespace through the host end of the veth pair
  linuxnet.netns.netns_route:
    namespace: myspace
    dest: default
    gateway: 192.168.45.2

- name: IPv6 default route through a link-local router
  linuxnet.netns.netns_route:
    namespace: myspace
    dest: default
    gateway: fe80::1
    device: veth2

- name: Many routes in one call
  linuxnet.netns.netns_route:
    routes:
      - namespace: ns1
        dest: default
        gateway: 192.168.45.2
      - namespace: ns1
        dest: 10.20.0.0/16
        gateway: 192.168.45.254
        metric: 100
      - namespace: ns2
        dest: fd45::/64
        device: veth2
        table: 100

- name: Remove every default IPv6 route of the main table
  linuxnet.netns.netns_route:
    namespace: myspace
    dest: default
    family: ipv6
    state: absent
'''

RETURN = r'''
routes:
  description: One entry per requested route, in the order given.
  returned: always
  type: list
  elements: dict
  contains:
    namespace:
      description: Namespace of the route (null for the module's own namespace).
      type: str
      sample: myspace
    dest:
      description: Destination as requested (V(default) for a zero-length prefix).
      type: str
      sample: default
    family:
      description: V(ipv4) or V(ipv6).
      type: str
      sample: ipv4
    table:
      description: Routing table number.
      type: int
      sample: 254
    state:
      description: Requested state.
      type: str
      sample: present
    action:
      description: What happened, V(added), V(replaced), V(removed) or V(unchanged).
      type: str
      sample: added
    changed:
      description: Whether this route changed.
      type: bool
      sample: true
    before:
      description:
        - The kernel routes this request concerned before the call (empty when there were none).
        - Each has C(dest), C(family), C(gateway), C(device), C(metric), C(table), C(proto),
          C(type), C(onlink) and C(nexthops) (multipath routes only).
      type: list
      elements: dict
      sample:
        - {dest: default, family: ipv4, gateway: 192.168.45.9, device: veth2, metric: 0, table: 254,
           proto: static, type: unicast, onlink: false, nexthops: []}
    after:
      description: The same routes after the call (predicted in check mode), same keys as RV(routes[].before).
      type: list
      elements: dict
      sample:
        - {dest: default, family: ipv4, gateway: 192.168.45.2, device: veth2, metric: 0, table: 254,
           proto: static, type: unicast, onlink: false, nexthops: []}
commands:
  description: The C(ip route) commands an operator would have typed for the same change.
  returned: always
  type: list
  elements: str
  sample: ["ip -n myspace route replace default via 192.168.45.2 dev veth2 metric 0"]
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.linuxnet.netns.plugins.module_utils import kind, netns_route_call as call


def main():
    kind.run_module(AnsibleModule(argument_spec=call.argument_spec(), supports_check_mode=True, **call.ARGUMENT_RULES), call)


if __name__ == '__main__':
    main()
