#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) linuxnet.netns contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
---
module: conntrack_info
short_description: List the connection tracking entries of a network namespace
version_added: 0.1.0
description:
  - Reads the conntrack table of a network namespace through ctnetlink (pyroute2, in-process)
    and returns each entry with its original and reply tuples, protocol state, decoded status
    flags and timeout.
  - This is the evidence for NAT, as the C(conntrack -L) tool shows it. The original tuple is
    the flow as its first packet looked; the reply tuple is what replies must look like, so an
    SNAT'ed flow has a reply destination equal to the translated source (for example the NAT
    host's egress address) and a DNAT'ed flow has a reply source equal to the translated target.
  - Filters select entries by protocol, family, addresses (single address or CIDR), ports and NAT
    kind. All given filters must match.
  - Read-only; the module never changes anything.
requirements:
  - pyroute2 >= 0.7.2 on the managed host (the conntrack table is read through ctnetlink), Debian 12 C(python3-pyroute2) or PyPI
extends_documentation_fragment:
  - linuxnet.netns.netns
  - linuxnet.netns.netns.ATTRIBUTES
attributes:
  check_mode:
    support: full
    details: Read-only; returns the same result in check mode.
  diff_mode:
    support: none
    details: Read-only; nothing changes, so there is no diff.
options:
  protocol:
    description:
      - Only entries of this protocol. C(icmp) is ICMP for IPv4; ICMPv6 entries are C(icmpv6).
    type: str
    choices: [tcp, udp, sctp, dccp, udplite, icmp, icmpv6, gre]
  family:
    description: Only entries of this address family.
    type: str
    choices: [ipv4, ipv6]
  src:
    description: Only entries whose original source is this address or lies in this CIDR network.
    type: str
  dst:
    description: Only entries whose original destination is this address or lies in this CIDR network.
    type: str
  sport:
    description: Only entries whose original source port is this port (entries without ports never match).
    type: int
  dport:
    description: Only entries whose original destination port is this port.
    type: int
  reply_src:
    description:
      - Only entries whose reply source is this address or lies in this CIDR network.
      - For a DNAT'ed flow this is the translated target address.
    type: str
  reply_dst:
    description:
      - Only entries whose reply destination is this address or lies in this CIDR network.
      - For an SNAT'ed or masqueraded flow this is the translated source address.
    type: str
  reply_sport:
    description: Only entries whose reply source port is this port (the translated target port after DNAT).
    type: int
  reply_dport:
    description: Only entries whose reply destination port is this port (the translated source port after SNAT).
    type: int
  nat:
    description:
      - Only entries with this kind of address translation, from the C(SRC_NAT) and C(DST_NAT)
        status flags.
      - C(any) does not filter; C(snat) has source NAT (masquerade included), C(dnat) has
        destination NAT, C(both) has both, C(none) has neither.
    type: str
    choices: [any, snat, dnat, both, none]
    default: any
notes:
  - A namespace tracks connections only once a rule there uses conntrack (a NAT rule, or a
    C(conntrack)/C(state) match, or an nftables C(ct) expression). Before that the table is
    empty even while traffic flows; the module then returns a warning.
  - The entries are sorted by family, protocol, original source and destination, not in the
    kernel's hash order.
seealso:
  - module: linuxnet.netns.nat_rule
  - module: linuxnet.netns.netns_probe
author:
  - linuxnet.netns contributors (@linuxnet)
'''

EXAMPLES = r'''
- name: The ICMP entry of myspace's ping, masqueraded by host1
  linuxnet.netns.conntrack_info:
    namespace: host1
    protocol: icmp
    src: 192.168.45.0/24
    nat: snat
  register: snat_entries

- name: Prove that the reply goes back to host1's egress address
  ansible.builtin.assert:
    that:
      - snat_entries.count >= 1
      - snat_entries.entries[0].reply.dst == '192.168.1.32'

- name: The published port 8080 lands on myspace:80
  linuxnet.netns.conntrack_info:
    namespace: host1
    protocol: tcp
    dport: 8080
    reply_src: 192.168.45.3
    reply_sport: 80
    nat: dnat
  register: dnat_entries
'''

RETURN = r'''
entries:
  description: The matching entries, sorted by family, protocol, original source and destination.
  returned: always
  type: list
  elements: dict
  contains:
    protocol:
      description: Protocol name (C(tcp), C(udp), C(icmp), C(icmpv6), C(sctp), ...) or its number.
      type: str
      sample: icmp
    family:
      description: Address family.
      type: str
      sample: ipv4
    state:
      description: The protocol's state (C(ESTABLISHED), C(TIME_WAIT), ...) for TCP and SCTP;
        null for protocols without a state machine (UDP, ICMP), see C(status) instead.
      type: str
      sample: ESTABLISHED
    timeout:
      description: Seconds until the entry expires.
      type: int
      sample: 29
    status:
      description: Decoded status flags, such as C(SEEN_REPLY), C(ASSURED), C(CONFIRMED),
        C(SRC_NAT), C(DST_NAT), C(SRC_NAT_DONE), C(DST_NAT_DONE).
      type: list
      elements: str
      sample: [SEEN_REPLY, CONFIRMED, SRC_NAT, SRC_NAT_DONE, DST_NAT_DONE]
    original:
      description:
        - The original tuple (direction of the first packet) with C(src), C(dst) and, for
          protocols with ports, C(sport) and C(dport); for ICMP and ICMPv6 C(id), C(type), C(code).
      type: dict
      sample: {src: 192.168.45.3, dst: 192.168.1.15, id: 1234, type: 8, code: 0}
    reply:
      description: The reply tuple, with the same keys as C(original).
      type: dict
      sample: {src: 192.168.1.15, dst: 192.168.1.32, id: 1234, type: 0, code: 0}
    mark:
      description: The connection mark.
      type: int
      sample: 0
    zone:
      description: The conntrack zone (0 when none is set).
      type: int
      sample: 0
count:
  description: Number of matching entries.
  returned: always
  type: int
  sample: 2
total:
  description: Number of entries in the namespace's table (of the requested family) before the other filters.
  returned: always
  type: int
  sample: 5
commands:
  description: Always empty; the module changes nothing.
  returned: always
  type: list
  elements: str
  sample: []
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.linuxnet.netns.plugins.module_utils.common import (
    COMMAND_ENVIRON,
    fail_from_exception,
)
from ansible_collections.linuxnet.netns.plugins.module_utils.conntrack import (
    NAT_KINDS,
    PROTOCOLS,
    compile_filter,
    list_entries,
)
from ansible_collections.linuxnet.netns.plugins.module_utils.netns_session import (
    NamespaceMissing,
    namespace_exists,
    require_pyroute2,
)
from ansible_collections.linuxnet.netns.plugins.module_utils.validation import check_netns_name

FILTER_OPTIONS = ('protocol', 'family', 'src', 'dst', 'sport', 'dport', 'reply_src', 'reply_dst',
                  'reply_sport', 'reply_dport', 'nat')

EMPTY_TABLE_WARNING = (
    'the conntrack table of this namespace is empty. A namespace tracks connections only '
    'once a rule there uses conntrack (NAT, a conntrack/state match or an nft ct expression); '
    'traffic that passed before such a rule existed left no entries.')


def argument_spec():
    return dict(
        namespace=dict(type='str'),
        protocol=dict(type='str', choices=sorted(PROTOCOLS)),
        family=dict(type='str', choices=['ipv4', 'ipv6']),
        src=dict(type='str'),
        dst=dict(type='str'),
        sport=dict(type='int'),
        dport=dict(type='int'),
        reply_src=dict(type='str'),
        reply_dst=dict(type='str'),
        reply_sport=dict(type='int'),
        reply_dport=dict(type='int'),
        nat=dict(type='str', choices=list(NAT_KINDS), default='any'),
    )


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    module.run_command_environ_update = COMMAND_ENVIRON
    require_pyroute2(module)
    params = module.params
    try:
        namespace = params['namespace']
        if namespace is not None:
            check_netns_name('namespace', namespace)
        matches = compile_filter(**dict((key, params[key]) for key in FILTER_OPTIONS))
        if namespace is not None and not namespace_exists(namespace):
            raise NamespaceMissing(namespace)
        entries = list_entries(namespace, family=params['family'])
    except Exception as exc:  # ValidationError, NamespaceMissing: clear message; netlink errors: with traceback
        fail_from_exception(module, exc)
    if not entries:
        module.warn(EMPTY_TABLE_WARNING)
    selected = [entry for entry in entries if matches(entry)]
    module.exit_json(changed=False, commands=[], entries=selected, count=len(selected), total=len(entries))


if __name__ == '__main__':
    main()
