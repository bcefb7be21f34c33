#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) linuxnet.netns contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
---
module: netns
short_description: Create and remove named Linux network namespaces
version_added: 0.1.0
description:
  - Makes named network namespaces (C(/run/netns/NAME), as C(ip netns add) does) present or absent.
  - Names are matched exactly, never as substrings.
  - All missing namespaces of one call are created by a single forked helper, so one call can
    create hundreds of namespaces quickly; use the O(namespaces) list for that.
  - By default the loopback interface of every present namespace is brought up.
  - Removing a namespace removes its name; processes still running in it keep the namespace
    alive. Their PIDs are returned and a warning is issued.
author:
  - linuxnet.netns contributors (@linuxnet)
extends_documentation_fragment:
  - linuxnet.netns.netns.ATTRIBUTES
options:
  name:
    description:
      - Name of one namespace to manage.
      - A single path component of at most 64 bytes made of letters, digits and C(_ . + -).
      - Mutually exclusive with O(namespaces).
    type: str
  namespaces:
    description:
      - Several namespaces in one call (much faster than a loop).
      - Mutually exclusive with O(name).
    type: list
    elements: dict
    suboptions:
      name:
        description: Name of the namespace.
        type: str
        required: true
      state:
        description: Whether the namespace should exist. Default is the top-level O(state).
        type: str
        choices: [present, absent]
      loopback:
        description: Whether C(lo) is up. Default is the top-level O(loopback).
        type: bool
  state:
    description:
      - V(present) creates missing namespaces, V(absent) removes existing ones.
      - With O(namespaces), the default for list items that do not set it.
    type: str
    choices: [present, absent]
    default: present
  loopback:
    description:
      - V(true) brings the namespace's loopback interface up, V(false) keeps it down.
      - Only applies to O(state=present).
      - With O(namespaces), the default for list items that do not set it.
    type: bool
    default: true
notes:
  - Check mode reports what would be created or removed and changes nothing.
seealso:
  - module: linuxnet.netns.veth
'''

EXAMPLES = r'''
- name: Create the namespace of the article (ip netns add myspace)
  linuxnet.netns.netns:
    name: myspace

- name: Create several namespaces in one call (one fork for all), one without loopback
  linuxnet.netns.netns:
    namespaces:
      - name: blue
      - name: green
      - name: red
        loopback: false

- name: Remove two namespaces and keep a third
  linuxnet.netns.netns:
    state: absent
    namespaces:
      - name: blue
      - name: green
      - name: red
        state: present

- name: Remove a namespace and show what still runs in it
  linuxnet.netns.netns:
    name: myspace
    state: absent
  register: removed

- name: Report leftover processes
  ansible.builtin.debug:
    msg: "{{ removed.namespaces[0].pids }}"
'''

RETURN = r'''
namespaces:
  description: One entry per namespace of the call, in input order.
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: Name of the namespace.
      type: str
      sample: myspace
    state:
      description: The requested state.
      type: str
      sample: present
    loopback:
      description: Whether C(lo) is (or would be) up; null for O(state=absent).
      type: bool
      sample: true
    created:
      description: Whether the call created (in check mode, would create) the namespace.
      type: bool
      sample: true
    removed:
      description: Whether the call removed (in check mode, would remove) the namespace.
      type: bool
      sample: false
    changed:
      description: Whether the call changed (in check mode, would change) the namespace, its loopback included.
      type: bool
      sample: true
    pids:
      description: PIDs of processes still running in a namespace that was (or would be) removed.
      type: list
      elements: int
      sample: [4242]
created:
  description: Names of the namespaces created (in check mode, that would be created).
  returned: always
  type: list
  elements: str
  sample: [myspace]
removed:
  description: Names of the namespaces removed (in check mode, that would be removed).
  returned: always
  type: list
  elements: str
  sample: []
commands:
  description: The commands an operator would have typed for the same change.
  returned: always
  type: list
  elements: str
  sample: [ip netns add myspace, ip -n myspace link set lo up]
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.linuxnet.netns.plugins.module_utils import kind, netns_call as call


def main():
    kind.run_module(AnsibleModule(argument_spec=call.argument_spec(), supports_check_mode=True, **call.ARGUMENT_RULES), call)


if __name__ == '__main__':
    main()
