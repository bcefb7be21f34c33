#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) linuxnet.netns contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
---
module: netns_persist
short_description: Bring network namespaces, veth pairs, routes and NAT rules back at boot without Ansible
version_added: 0.3.0
description:
  - Namespaces, veth pairs, addresses, routes and firewall rules live in the kernel and vanish
    at reboot. This module writes a directory of plain files and a systemd unit that rebuild
    them at boot, before the network comes up, with no Ansible run.
  - C(restore.sh) has one C(ip) command per object of O(namespaces), O(pairs) and O(routes),
    each creating what is missing or setting what is there (running it twice changes nothing),
    C(sysctl net.ipv4.ip_forward=1) with O(forwarding), then the rules of this collection as
    they are live now, in whichever backend holds them (iptables chains C(LNT-*) with the jumps
    to them, loaded with C(iptables-restore --noflush); the nft table C(inet linuxnet_netns),
    replaced whole by C(nft -f)).
  - With O(record_dir), the records the role keeps there (what it owns, the forwarding value it
    replaced) are saved too, without what a boot changes (netns cookies, ifindexes); the script
    writes them back under the keys of the new boot, so that the next Ansible run recognises
    what the boot rebuilt as its own and reports no change.
  - Run it after the topology and the rules are in place (the role M(linuxnet.netns.netns_nat)
    does, with C(netns_nat_persist)). V(absent) removes the files and the unit it wrote, and
    nothing else.
author:
  - linuxnet.netns contributors (@linuxnet)
requirements:
  - systemd on the managed host to run the unit at boot (the files are written anyway)
  - iproute2, iptables or nft, python3 at boot
attributes:
  check_mode:
    support: full
    description: Reports what it would write or remove, and writes nothing.
  diff_mode:
    support: full
    description: Shows each file's content before and after.
  platform:
    platforms: [linux]
    support: full
    description: Linux with systemd.
options:
  state:
    description: V(present) writes the files and enables the unit; V(absent) removes them.
    type: str
    choices: [present, absent]
    default: present
  namespaces:
    description: The namespaces to create at boot, as the C(namespaces) option of M(linuxnet.netns.netns).
    type: list
    elements: dict
    default: []
  pairs:
    description: The veth pairs to create at boot, as the C(pairs) option of M(linuxnet.netns.veth).
    type: list
    elements: dict
    default: []
  routes:
    description: The routes to set at boot, as the C(routes) option of M(linuxnet.netns.netns_route).
    type: list
    elements: dict
    default: []
  forwarding:
    description: Turn on C(net.ipv4.ip_forward) at boot.
    type: bool
    default: false
  rules:
    description: Save the rules of this collection that are live now, to load them at boot.
    type: bool
    default: true
  record_dir:
    description:
      - The directory of the records of M(linuxnet.netns.netns_topology) (its C(ownership.record_dir))
        and M(linuxnet.netns.sysctl_forward); their boot-independent part is saved and written
        back there at boot.
    type: path
  directory:
    description: Where the files go (created when missing).
    type: path
    default: /etc/linuxnet-netns
  unit_directory:
    description:
      - Where the unit C(linuxnet-netns.service) goes; it is enabled by a link in
        C(multi-user.target.wants) there. C(systemctl daemon-reload) runs when this is
        C(/etc/systemd/system) and systemd runs the host.
    type: path
    default: /etc/systemd/system
notes:
  - Needs root. The directory and the unit name are the collection's; files there that this
    module did not write are never removed.
seealso:
  - module: linuxnet.netns.netns_topology
'''

EXAMPLES = r'''
- name: The article's topology comes back after a reboot
  linuxnet.netns.netns_persist:
    namespaces: [{name: myspace}]
    pairs:
      - {name: veth1, peer: veth2, peer_namespace: myspace,
         addresses: [192.168.45.2/24], peer_addresses: [192.168.45.3/24]}
    routes:
      - {namespace: myspace, dest: default, gateway: 192.168.45.2}
    forwarding: true
    record_dir: /run/linuxnet-netns

- name: No longer
  linuxnet.netns.netns_persist:
    state: absent
'''

RETURN = r'''
files:
  description: The files written (or removed, with V(absent)), with their paths.
  returned: always
  type: list
  elements: str
  sample: [/etc/linuxnet-netns/restore.sh, /etc/systemd/system/linuxnet-netns.service]
script:
  description: The content of C(restore.sh) (with V(present)).
  returned: when state is present
  type: str
commands:
  description: The commands run besides writing files (C(systemctl daemon-reload)).
  returned: always
  type: list
  elements: str
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.linuxnet.netns.plugins.module_utils import kind, persist_call


def main():
    module = AnsibleModule(
        argument_spec=dict(
            state=dict(type='str', choices=['present', 'absent'], default='present'),
            namespaces=dict(type='list', elements='dict', default=[]),
            pairs=dict(type='list', elements='dict', default=[]),
            routes=dict(type='list', elements='dict', default=[]),
            forwarding=dict(type='bool', default=False),
            rules=dict(type='bool', default=True),
            record_dir=dict(type='path'),
            directory=dict(type='path', default='/etc/linuxnet-netns'),
            unit_directory=dict(type='path', default='/etc/systemd/system'),
        ),
        supports_check_mode=True,
    )
    kind.run_module(module, persist_call)


if __name__ == '__main__':
    main()
