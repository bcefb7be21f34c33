#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) linuxnet.netns contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
---
module: netns_topology
short_description: Apply namespaces, veth pairs, routes, forwarding and NAT rules in one call
version_added: 0.2.0
description:
  - Runs the calls of M(linuxnet.netns.netns), M(linuxnet.netns.veth),
    M(linuxnet.netns.netns_route), M(linuxnet.netns.sysctl_forward) and
    M(linuxnet.netns.nat_rule) one after the other in one module process. Each part takes
    exactly the options of its module, is validated by that module's argument spec and does
    what that module does, with the same idempotence, check mode and diff. The options of
    every part are checked before the first part runs, so an unknown or malformed option
    fails the call before anything changes.
  - One task instead of five saves the fixed cost of a module task (task start, module
    transfer, interpreter start), about 0.7 s per task on a small machine. The
    M(linuxnet.netns.netns_nat) role builds and removes its topology with this module.
  - With O(state=present) the parts run in the order C(netns), C(veth), C(netns_route),
    C(sysctl_forward), C(nat_rule); with O(state=absent) in the order C(nat_rule),
    C(netns_route), C(veth), C(netns), C(sysctl_forward). Parts that are not given are not run.
  - When a part fails, what the parts before it created (namespaces, veth pairs, routes,
    forwarding values, rules) is removed again, so a failed call leaves nothing of its own
    behind, as each module does for its own objects. Removals cannot be undone.
  - Each part is a dictionary of its module's options, or the same dictionary as JSON text.
    With hundreds of objects, JSON text made by a filter (the C(linuxnet.netns.netns_nat) role
    uses the C(linuxnet.netns.netns_nat_plan) filter) saves Ansible seconds of templating and
    copying the argument and its echo in the result.
  - In check mode a namespace that the C(netns) part would create does not exist yet, so the
    objects of the later parts that live in it cannot be compared; they are left out of the
    preview and counted in RV(left_out).
author:
  - linuxnet.netns contributors (@linuxnet)
requirements:
  - pyroute2 >= 0.7.2 on the managed host for the C(nat_rule) part (its conntrack cleanup), Debian 12 C(python3-pyroute2) or PyPI
  - iptables or nft for the C(nat_rule) part
options:
  state:
    description:
      - The order of the parts (see above), and the default of the C(state) option of
        the parts that have one and do not set it.
    type: str
    choices: [present, absent]
    default: present
  report:
    description:
      - What the per-object lists of the parts' results (C(netns.namespaces), C(veth.pairs),
        C(netns_route.routes)) hold.
      - V(changed) lists only the objects that changed (in check mode, would change) and gives
        the number of the others as C(unchanged). With hundreds of objects the full lists are
        most of the result, and Ansible's handling of a large result costs seconds.
      - V(full) lists every object, as the parts' modules return them.
    type: str
    choices: [changed, full]
    default: changed
  ownership:
    description:
      - Makes the call declarative for what the collection owns on this host. The call keeps a
        record (a JSON file in O(ownership.record_dir) named after the host's network namespace
        cookie) of the namespaces, host-side veth ends and routes it created, the NAT backend
        it wrote rules with and the host firewall as it found it before the first call.
      - Each call with O(state=present) then converges to exactly the parts given. Recorded
        namespaces, pairs and routes that are no longer given are removed; the addresses of
        pairs it created are purged to the listed ones; links of its own that drifted (a
        renamed or half-deleted veth end) are recreated; the C(nat_rule) part always purges
        rules of ours that are not listed, and a backend named explicitly that differs from
        the recorded one is emptied first.
      - A namespace or host-side link that exists and is not in the record belongs to someone else;
        the call fails before changing anything, unless the namespace is listed in
        O(ownership.adopt). An adopted namespace is never deleted, only what the call added
        to it.
      - When no namespace is given any more (or O(state=absent), which then ignores the parts'
        lists), everything recorded is removed inside out, the forwarding sysctls recorded by
        the C(sysctl_forward) part are put back, the FORWARD policies are restored and the
        iptables-nft tables (and the collection's own nft table) that did not exist before the
        first call are deleted if they hold no rule; the record is deleted.
      - A namespace is known by its netns cookie (SO_NETNS_COOKIE, Linux 5.14 and later; the
        inode on older kernels), so a later namespace of the same name, or with a reused inode,
        is never taken for one the record lists.
    type: dict
    suboptions:
      record_dir:
        description:
          - Directory of the record (created if missing). A tmpfs such as C(/run) fits, since
            namespaces and rules do not survive a reboot either.
        type: path
        required: true
      adopt:
        description:
          - Names of existing namespaces that the call may manage although it did not create them.
        type: list
        elements: str
        default: []
      persist_unit:
        description:
          - The unit file M(linuxnet.netns.netns_persist) writes; RV(ownership.persisted) then tells
            whether it exists, so that a caller can remove it when persistence is no longer wanted
            without a task of its own.
        type: path
        version_added: 0.3.0
  netns:
    description:
      - Options of M(linuxnet.netns.netns), usually C(namespaces), the list of namespaces.
      - A dictionary, or the same dictionary as JSON text.
    type: json
  veth:
    description:
      - Options of M(linuxnet.netns.veth), usually C(pairs), the list of veth pairs.
      - A dictionary, or the same dictionary as JSON text.
    type: json
  netns_route:
    description:
      - Options of M(linuxnet.netns.netns_route), usually C(routes), the list of routes.
      - A dictionary, or the same dictionary as JSON text.
    type: json
  sysctl_forward:
    description:
      - Options of M(linuxnet.netns.sysctl_forward), for example C(ipv4) and C(record_dir), or
        C(restore) and C(record_dir) to put back what an earlier call replaced.
      - A dictionary, or the same dictionary as JSON text.
    type: json
  nat_rule:
    description:
      - Options of M(linuxnet.netns.nat_rule), usually C(rules), the list of rules, and C(backend).
      - A dictionary, or the same dictionary as JSON text.
    type: json
attributes:
  check_mode:
    support: full
    description: Each part runs in check mode; see above for objects in namespaces to be created.
  diff_mode:
    support: full
    description: The parts' diffs, in the order the parts ran.
  platform:
    platforms: [linux]
    support: full
    description: Linux network namespaces only.
notes:
  - Needs root (CAP_NET_ADMIN and CAP_SYS_ADMIN) unless every part runs in check mode.
seealso:
  - module: linuxnet.netns.netns
  - module: linuxnet.netns.veth
  - module: linuxnet.netns.netns_route
  - module: linuxnet.netns.sysctl_forward
  - module: linuxnet.netns.nat_rule
'''

EXAMPLES = r'''
- name: The reference article's namespace, its veth pair, default route, forwarding and NAT
  linuxnet.netns.netns_topology:
    netns:
      namespaces:
        - name: myspace
    veth:
      pairs:
        - name: veth1
          peer: veth2
          peer_namespace: myspace
          addresses: [192.168.45.2/24]
          peer_addresses: [192.168.45.3/24]
    netns_route:
      routes:
        - namespace: myspace
          dest: default
          gateway: 192.168.45.2
    sysctl_forward:
      ipv4: true
      record_dir: /run/linuxnet-netns
    nat_rule:
      rules:
        - kind: masquerade
          source: 192.168.45.0/24
          out_interface: eth0
        - kind: dnat
          protocol: tcp
          port: 8080
          to_address: 192.168.45.3
          to_port: 80

- name: Remove it again (rules first, namespaces last; forwarding back to its recorded value)
  linuxnet.netns.netns_topology:
    state: absent
    nat_rule:
      rules:
        - kind: masquerade
          source: 192.168.45.0/24
          out_interface: eth0
        - kind: dnat
          protocol: tcp
          port: 8080
          to_address: 192.168.45.3
          to_port: 80
    veth:
      pairs:
        - name: veth1
    netns:
      namespaces:
        - name: myspace
    sysctl_forward:
      restore: true
      record_dir: /run/linuxnet-netns
'''

RETURN = r'''
parts:
  description: The parts that ran, in order.
  returned: always
  type: list
  elements: str
  sample: [netns, veth, netns_route, sysctl_forward, nat_rule]
changed_parts:
  description: The parts that changed something (in check mode, would change something), in order.
  returned: always
  type: list
  elements: str
  sample: [veth, netns_route]
commands:
  description: The commands of all parts, in order (what an operator would type; see each module).
  returned: always
  type: list
  elements: str
netns:
  description:
    - The result of the C(netns) part, as M(linuxnet.netns.netns) returns it, without C(diff).
    - With O(report=changed), C(namespaces) lists only the namespaces that changed, and
      C(unchanged) counts the others.
  returned: when the part ran
  type: dict
veth:
  description:
    - The result of the C(veth) part, as M(linuxnet.netns.veth) returns it, without C(diff).
    - With O(report=changed), C(pairs) lists only the pairs that changed, and C(unchanged)
      counts the others.
  returned: when the part ran
  type: dict
netns_route:
  description:
    - The result of the C(netns_route) part, as M(linuxnet.netns.netns_route) returns it, without C(diff).
    - With O(report=changed), C(routes) lists only the routes that changed, and C(unchanged)
      counts the others.
  returned: when the part ran
  type: dict
sysctl_forward:
  description: The result of the C(sysctl_forward) part (without C(diff)).
  returned: when the part ran
  type: dict
nat_rule:
  description: The result of the C(nat_rule) part (without C(diff)).
  returned: when the part ran
  type: dict
pending_namespaces:
  description: In check mode, the namespaces the C(netns) part would create.
  returned: check mode
  type: list
  elements: str
left_out:
  description:
    - In check mode, per part, how many objects living in RV(pending_namespaces) could not be
      compared with the kernel. Each is listed as the part's C(pending) lines (and in the diff)
      as what a real run would add.
  returned: check mode
  type: dict
  sample: {veth: 2, netns_route: 2}
ownership:
  description: With O(ownership), what the call did with the record.
  returned: when O(ownership) is set
  type: dict
  contains:
    record:
      description: The record file.
      type: str
    last:
      description: Whether nothing was desired any more, so everything recorded was removed.
      type: bool
    adopted:
      description: The namespaces of the record that were adopted (never deleted).
      type: list
      elements: str
    cleanup_backends:
      description: Backends emptied of our rules because another one was asked for.
      type: list
      elements: str
    persisted:
      description: Whether O(ownership.persist_unit) exists (false when it is not given).
      type: bool
      version_added: 0.3.0
    commands:
      description: Commands run to put the host firewall back (policies, empty tables).
      type: list
      elements: str
failed_part:
  description: The part that failed.
  returned: failure
  type: str
part_result:
  description: What the failed part returned besides its message (for example C(errors), C(field)).
  returned: failure
  type: dict
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.linuxnet.netns.plugins.module_utils.topology import ORDER, Topology


def main():
    parts = ORDER['present']
    module = AnsibleModule(
        argument_spec=dict(
            state=dict(type='str', default='present', choices=['present', 'absent']),
            report=dict(type='str', default='changed', choices=['changed', 'full']),
            ownership=dict(type='dict', options=dict(
                record_dir=dict(type='path', required=True),
                adopt=dict(type='list', elements='str', default=[]),
                persist_unit=dict(type='path'),
            )),
            **dict((part, dict(type='json')) for part in parts)
        ),
        required_one_of=[parts],
        supports_check_mode=True,
    )
    module.exit_json(**Topology(module).run())


if __name__ == '__main__':
    main()
