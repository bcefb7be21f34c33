# -*- coding: utf-8 -*-
# Copyright (c) linuxnet.netns contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Running a command inside a network namespace.

Commands are prefixed with ``nsenter --net=/run/netns/NAME`` rather than
``ip netns exec NAME``: nsenter enters only the network namespace, while
``ip netns exec`` also creates a slave mount namespace and remounts /sys, which
costs time and is not needed by iptables, nft or conntrack (they talk to the
kernel through sockets of the current network namespace).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.linuxnet.netns.plugins.module_utils.common import COMMAND_ENVIRON, format_command
from ansible_collections.linuxnet.netns.plugins.module_utils.netns_session import (
    NamespaceMissing,
    entered,
    namespace_exists,
    namespace_path,
)


class CommandFailed(Exception):
    """A command returned non-zero; carries what is needed for a clear failure message."""

    def __init__(self, argv, rc, stdout, stderr, data=None):
        self.argv = list(argv)
        self.rc = rc
        self.stdout = stdout
        self.stderr = stderr
        self.data = data
        message = '%s failed with rc=%d: %s' % (format_command(argv), rc, (stderr or stdout or '').strip())
        if 'xtables lock' in (stderr or ''):
            message += ('; another program held the xtables lock (/run/xtables.lock) for longer than we wait '
                        '(%d s); find it with "fuser -v /run/xtables.lock", nothing was changed' % XTABLES_WAIT)
        super(CommandFailed, self).__init__(message)


# Seconds iptables(-restore) waits for the xtables lock of iptables-legacy: long enough for
# another tool's transaction, short enough that a stuck holder fails the run with a reason
# instead of hanging it (while holding our own host lock) for minutes.
XTABLES_WAIT = 10


def netns_argv(namespace, argv):
    """``argv`` run inside ``namespace`` (None: the current namespace)."""
    if not namespace:
        return list(argv)
    return ['nsenter', '--net=%s' % namespace_path(namespace)] + list(argv)


class NetnsRunner(object):
    """Runs commands inside one namespace through an AnsibleModule.

    Backends receive a runner instead of the module so that unit tests can hand
    them a fake that records argv and returns canned output.
    """

    def __init__(self, module, namespace=None):
        self.module = module
        self.namespace = namespace
        self._paths = {}
        if namespace and not namespace_exists(namespace):
            raise NamespaceMissing(namespace)

    def which(self, name):
        """Absolute path of a tool on the managed host, or None."""
        if name not in self._paths:
            self._paths[name] = self.module.get_bin_path(name)
        return self._paths[name]

    def run(self, argv, data=None, check=True):
        """Run ``argv`` in the namespace; returns (rc, stdout, stderr).

        ``check`` raises CommandFailed on a non-zero exit status.
        """
        full = netns_argv(self.namespace, argv)
        rc, out, err = self.module.run_command(full, data=data, binary_data=data is not None,
                                               environ_update=COMMAND_ENVIRON)
        if check and rc != 0:
            raise CommandFailed(argv, rc, out, err, data)
        return rc, out, err

    def read_proc_net(self, name):
        """The text of /proc/net/NAME as the namespace sees it ('' when it does not exist).

        Read in-process after setns: cheaper than running ``cat`` through nsenter.
        """
        with entered(self.namespace):
            try:
                with open('/proc/thread-self/net/%s' % name) as handle:
                    return handle.read()
            except (IOError, OSError):
                return ''

    def describe_text(self, command):
        """An already formatted command line, prefixed for the namespace."""
        return ('ip netns exec %s ' % self.namespace if self.namespace else '') + command
