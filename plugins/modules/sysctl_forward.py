#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) linuxnet.netns contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: sysctl_forward
short_description: Enable or disable IP forwarding inside a network namespace
version_added: 0.1.0
description:
  - Sets C(net.ipv4.ip_forward), C(net.ipv6.conf.all.forwarding),
    C(net.ipv6.conf.default.forwarding) and the per-interface C(net.ipv4.conf.IFACE.forwarding)
    and C(net.ipv6.conf.IFACE.forwarding) of one network namespace, the declarative form of
    C(ip netns exec NAME sysctl -w net.ipv4.ip_forward=1).
  - C(/proc/sys/net) is per network namespace; the module enters the namespace in-process and
    reads and writes the files there, so other namespaces (and the host) are not touched.
  - Options left unset are left alone. Only values that differ are written.
  - The kernel couples these settings, and the module takes that into account (also in check
    mode) by writing the global settings first. Changing C(ipv4) sets the IPv4 forwarding of
    every interface (and of C(all) and C(default)) to the same value; changing C(ipv6) also sets
    C(ipv6_default) and the IPv6 forwarding of every interface. Per-interface values and
    O(ipv6_default) given in the same call are applied after that.
  - One namespace through the top-level options, or several through O(settings) in one call.
    When a write fails, the forwarding values of that namespace are restored.
author:
  - linuxnet.netns contributors (@linuxnet)
extends_documentation_fragment:
  - linuxnet.netns.netns
  - linuxnet.netns.netns.ATTRIBUTES
options:
  namespace:
    description:
      - Namespace whose forwarding settings are managed.
      - With O(settings), the default for items that do not name one.
      - The namespace must exist; the module never creates it.
    type: str
  ipv4:
    description: C(net.ipv4.ip_forward). Unset leaves it alone.
    type: bool
  ipv6:
    description: C(net.ipv6.conf.all.forwarding). Unset leaves it alone.
    type: bool
  ipv6_default:
    description: C(net.ipv6.conf.default.forwarding), inherited by interfaces created later.
    type: bool
  interfaces:
    description:
      - Per-interface forwarding. Each interface must exist in the namespace.
    type: list
    elements: dict
    suboptions:
      name:
        description: Interface name.
        type: str
        required: true
      ipv4:
        description: C(net.ipv4.conf.NAME.forwarding).
        type: bool
      ipv6:
        description: C(net.ipv6.conf.NAME.forwarding).
        type: bool
  persist:
    description:
      - Absolute path of a sysctl.d-style file to write with the requested settings as
        C(key = value) lines (for example V(/etc/sysctl.d/90-netns-forward.conf)). The module
        owns the whole file and rewrites it only when its content differs; its directory must exist.
      - sysctl.d files are applied to the B(root) network namespace at boot. For a named
        namespace the file is therefore only a record of the settings, not a way to restore
        them (namespaces do not survive a reboot either); do not point it at a directory that
        C(systemd-sysctl) reads unless the settings are meant for the host.
    type: path
  record_dir:
    description:
      - Directory where the module keeps, per network namespace, the values it replaced, so
        that a later call with O(restore) can put them back (for example a role that turns
        forwarding on and, on removal, off again only if it was off before).
      - The record of a namespace is the file C(forwarding-INODE.json), named after the inode
        of the namespace (namespaces of one machine share the directory). A key already in the
        record keeps its first value, so the record holds what was there before the module
        first changed it. Only keys this call writes are recorded.
      - The directory is created when missing. A directory under C(/run) (a tmpfs) fits best, as
        the record disappears at reboot together with the kernel values it describes.
    type: path
  restore:
    description:
      - Put back the values recorded in O(record_dir) for O(namespace) (global settings first),
        then remove the record. Without a record nothing changes.
      - Requires O(record_dir); mutually exclusive with O(settings), O(ipv4), O(ipv6),
        O(ipv6_default), O(interfaces) and O(persist).
    type: bool
  settings:
    description:
      - Several namespaces in one call; each item takes O(namespace), O(ipv4), O(ipv6),
        O(ipv6_default), O(interfaces) and O(persist). Each namespace and each persist file
        may appear once.
      - Mutually exclusive with the top-level O(ipv4), O(ipv6), O(ipv6_default), O(interfaces) and O(persist).
    type: list
    elements: dict
    suboptions:
      namespace:
        description: Namespace of this item (default O(namespace)).
        type: str
      ipv4:
        description: C(net.ipv4.ip_forward).
        type: bool
      ipv6:
        description: C(net.ipv6.conf.all.forwarding).
        type: bool
      ipv6_default:
        description: C(net.ipv6.conf.default.forwarding).
        type: bool
      interfaces:
        description: Per-interface forwarding, as the top-level O(interfaces).
        type: list
        elements: dict
        suboptions:
          name:
            description: Interface name.
            type: str
            required: true
          ipv4:
            description: C(net.ipv4.conf.NAME.forwarding).
            type: bool
          ipv6:
            description: C(net.ipv6.conf.NAME.forwarding).
            type: bool
      persist:
        description: A sysctl.d-style file recording this item's settings, as the top-level O(persist).
        type: path
notes:
  - Requires pyroute2 like every module of the collection (0.7.2 as Debian 12 ships it, or
    0.9.x), but does not import it; the namespace is entered with C(setns(2)).
seealso:
  - module: ansible.posix.sysctl
  - module: linuxnet.netns.netns_route
'''

EXAMPLES = r'''
- name: Let the host namespace of the lab route between its veth ends (the article's step 7)
  linuxnet.netns.sysctl_forward:
    namespace: host1
    ipv4: true

- name: IPv6 forwarding, but not on the uplink, with a record of the settings
  linuxnet.netns.sysctl_forward:
    namespace: router
    ipv6: true
    interfaces:
      - name: uplink0
        ipv6: false
    persist: /var/lib/linuxnet/router-forward.conf

- name: Turn forwarding on, remembering what it was
  linuxnet.netns.sysctl_forward:
    ipv4: true
    record_dir: /run/linuxnet-netns

- name: Later, put back what the first task replaced (nothing happens without a record)
  linuxnet.netns.sysctl_forward:
    restore: true
    record_dir: /run/linuxnet-netns

- name: Several namespaces in one call
  linuxnet.netns.sysctl_forward:
    settings:
      - namespace: ns1
        ipv4: true
      - namespace: ns2
        ipv4: true
        ipv6: true
'''

RETURN = r'''
before:
  description:
    - Values of the requested sysctls before the call, per namespace (the key is the namespace
      name, the empty string for the module's own namespace), then per sysctl name.
  returned: always
  type: dict
  sample: {"host1": {"net.ipv4.ip_forward": 0}}
after:
  description:
    - The same sysctls after the call (predicted in check mode), same layout as RV(before).
  returned: always
  type: dict
  sample: {"host1": {"net.ipv4.ip_forward": 1}}
files_changed:
  description: Persist files and records that were (or in check mode would be) written or removed.
  returned: always
  type: list
  elements: str
  sample: ["/var/lib/linuxnet/router-forward.conf"]
commands:
  description: The C(sysctl -w) commands an operator would have typed for the same change.
  returned: always
  type: list
  elements: str
  sample: ["ip netns exec host1 sysctl -w net.ipv4.ip_forward=1"]
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.linuxnet.netns.plugins.module_utils import kind, sysctl_forward_call as call


def main():
    kind.run_module(AnsibleModule(argument_spec=call.argument_spec(), supports_check_mode=True, **call.ARGUMENT_RULES), call)


if __name__ == '__main__':
    main()
