# -*- coding: utf-8 -*-
# Copyright (c) linuxnet.netns contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):

    # The option every module shares: which namespace's state it manages.
    DOCUMENTATION = r'''
options:
  namespace:
    description:
      - Name of the network namespace (under C(/run/netns)) whose state the module manages.
      - When omitted, the module manages the namespace it runs in (with the
        C(linuxnet.netns.netns) connection plugin, that is the inventory host's namespace).
      - The namespace must exist; the module never creates it implicitly.
    type: str
'''

    # The standard attributes block (as in community.general's _attributes fragment).
    ATTRIBUTES = r'''
attributes:
  check_mode:
    description: Can run in check_mode and return changed status prediction without modifying target.
    support: full
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check_mode), when in diff mode.
    support: full
  platform:
    description: Target OS/families that can be operated against.
    support: N/A
    platforms: posix
'''
