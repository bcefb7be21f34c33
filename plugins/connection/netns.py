# -*- coding: utf-8 -*-
# Copyright (c) linuxnet.netns contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
name: netns
short_description: Run tasks inside a network namespace of the controller
description:
  - Treats a network namespace of the controller machine (a name under C(/run/netns)) as an
    inventory host, so one machine can play a whole fleet.
  - Every command enters only the network namespace of the host, then a private copy of the
    controller's mount namespace in which a fresh C(sysfs) is mounted on C(/sys).
    The equivalent by hand is
    C(nsenter --net=/run/netns/NAME -- unshare --mount --propagation unchanged -- sh -c ...), where
    every shared mount point but C(/run/netns) is made private before the command runs, so
    that mounts made by a task never reach the controller.
  - Because of this, gathered facts (for example C(ansible_interfaces)) show only the
    namespace's own interfaces, while the filesystem, users and processes are the controller's.
  - Unlike C(ip netns exec), mounts under C(/run/netns) still propagate back to the controller,
    so a namespace created from inside such a host (C(ip netns add), M(linuxnet.netns.netns))
    is a real, usable namespace for everyone afterwards.
  - A host whose namespace does not exist is reported C(UNREACHABLE) with a message naming it.
  - Files are transferred on the shared filesystem like the C(ansible.builtin.local)
    connection; paths under C(/proc) and C(/sys), whose content depends on the network
    namespace, are read and written from inside the namespace.
author:
  - linuxnet.netns contributors (@linuxnet)
version_added: 0.1.0
requirements:
  - The controller runs on Linux as root (entering a namespace needs C(CAP_SYS_ADMIN)).
  - C(nsenter), C(unshare) and C(mount) from util-linux on the controller.
options:
  netns_name:
    description:
      - Name of the network namespace (a file under C(/run/netns)) that is this host.
      - When not set, O(remote_addr) is used, which is the inventory host name by default.
    type: str
    vars:
      - name: ansible_netns_name
  remote_addr:
    description:
      - The namespace name used when O(netns_name) is not set, that is the inventory host name.
      - C(ansible_host) is deliberately not used, so an inventory shared with other connections
        cannot point a host at an unintended namespace.
    type: str
    default: inventory_hostname
    vars:
      - name: inventory_hostname
  become_success_timeout:
    description:
      - Number of seconds to wait for become to succeed when enabled (become runs inside the
        namespace).
      - The default is used if the configured value is less than 1.
    type: int
    default: 10
    vars:
      - name: ansible_netns_become_success_timeout
  become_strip_preamble:
    description:
      - Strip internal become output preceding command execution. Disable for additional
        diagnostics.
    type: bool
    default: true
    vars:
      - name: ansible_netns_become_strip_preamble
extends_documentation_fragment:
  - connection_pipelining
notes:
  - The remote user is ignored; tasks run as the user that runs Ansible (normally root).
  - C(/run/netns) is made a shared mount point (as C(ip netns add) does) before a host is
    entered, so that namespaces created inside a host become visible to the controller.
  - Entering the namespaces of PID 1 is never needed.
seealso:
  - module: linuxnet.netns.netns
  - plugin: ansible.builtin.local
    plugin_type: connection
'''

EXAMPLES = r'''
# Inventory (YAML): hosts that are network namespaces of the controller.
#
# all:
#   children:
#     lab:
#       vars:
#         ansible_connection: linuxnet.netns.netns
#         ansible_python_interpreter: /usr/bin/python3
#       hosts:
#         host1: {}                         # the namespace named host1
#         router:
#           ansible_netns_name: lab-router  # a namespace with another name

- name: Facts of each namespace host list only its own interfaces
  hosts: lab
  gather_facts: true
  tasks:
    - name: Show the interfaces of the namespace
      ansible.builtin.debug:
        var: ansible_facts.interfaces

    - name: Addresses inside the namespace
      ansible.builtin.command: ip -o addr show
      changed_when: false

- name: A single task in a namespace that is not in the inventory
  hosts: localhost
  gather_facts: false
  tasks:
    - name: Routes of namespace blue
      ansible.builtin.command: ip route show
      changed_when: false
      vars:
        ansible_connection: linuxnet.netns.netns
        ansible_netns_name: blue
'''

import errno
import os
import pty
import shutil
import subprocess

import ansible.constants as C
from ansible.errors import AnsibleConnectionFailure, AnsibleError, AnsibleFileNotFound
from ansible.module_utils.common.text.converters import to_bytes, to_native, to_text
from ansible.module_utils.six import binary_type, text_type
from ansible.plugins.connection import ConnectionBase
from ansible.plugins.connection.local import Connection as LocalConnection
from ansible.utils.display import Display

from ansible_collections.linuxnet.netns.plugins.module_utils.netns_session import (
    NETNS_RUN_DIR,
    ensure_shared_run_dir,
    is_usable_namespace,
    namespace_path,
)
from ansible_collections.linuxnet.netns.plugins.module_utils.validation import (
    ValidationError,
    check_netns_name,
)

display = Display()

# The fixed script run between entering the namespace and running the task's command.
# $1 is the mount binary; the rest of the arguments are the command, never parsed here.
# Every shared mount but /run/netns (and the namespaces mounted under it) is made private
# first, so that nothing a task mounts reaches the controller (on hosts whose / is a shared
# mount, as under systemd), while a namespace the task creates still shows up there. /sys is
# made private before the fresh sysfs (whose view of /sys/class/net follows the network
# namespace of the mounting process) is mounted on it.
_ENTER_SCRIPT = (
    'mount_bin=$1; shift; '
    'while read -r _id _parent _dev _root point _options optional; do '
    'case "$point" in /run/netns|/run/netns/*) continue;; esac; '
    'case " $optional " in *" shared:"*) '
    '"$mount_bin" --make-private "$(printf "%b" "$point")" || '
    '{ echo "linuxnet.netns.netns: cannot make $point a private mount" >&2; exit 125; };; esac; '
    'done < /proc/self/mountinfo; '
    '"$mount_bin" --make-rprivate /sys && '
    '"$mount_bin" -t sysfs -o nosuid,nodev,noexec sysfs /sys || '
    '{ echo "linuxnet.netns.netns: cannot mount a sysfs for the network namespace on /sys" >&2; '
    'exit 125; }; '
    'exec "$@"'
)
_SCRIPT_NAME = 'linuxnet-netns-enter'

# Paths whose content depends on the network namespace of the reader: transfers of these
# go through the namespace instead of the shared filesystem.
_NAMESPACE_DEPENDENT_ROOTS = ('/proc', '/sys')


class Connection(LocalConnection):
    """A network namespace of the controller as an inventory host."""

    transport = 'linuxnet.netns.netns'
    has_pipelining = True

    def __init__(self, *args, **kwargs):
        super(Connection, self).__init__(*args, **kwargs)
        self._tools = None

    @property
    def netns_name(self):
        return self.get_option('netns_name') or self.get_option('remote_addr') or self._play_context.remote_addr

    def _connect(self):
        """Check that the namespace exists (else the host is UNREACHABLE); nothing stays open."""
        self._play_context.remote_user = self.default_user
        if not self._connected:
            name = self.netns_name
            self._check_namespace(name)
            self._tools = self._find_tools()
            try:
                ensure_shared_run_dir()
            except OSError as exc:
                display.warning('linuxnet.netns.netns: could not make %s a shared mount point (%s); namespaces '
                                'created inside host %s may not be visible outside it' % (NETNS_RUN_DIR, exc, name))
            display.vvv(u'ESTABLISH NETNS CONNECTION TO NAMESPACE {0} FOR USER: {1}'.format(
                name, self._play_context.remote_user), host=name)
            self._connected = True
        return self

    @staticmethod
    def _check_namespace(name):
        """Raise AnsibleConnectionFailure (host UNREACHABLE) unless ``name`` is a live namespace."""
        try:
            check_netns_name('ansible_netns_name', name)
        except ValidationError as exc:
            raise AnsibleConnectionFailure('linuxnet.netns.netns: invalid network namespace name: %s' % exc)
        path = namespace_path(name)
        if not os.path.exists(path):
            raise AnsibleConnectionFailure(
                'linuxnet.netns.netns: network namespace %r does not exist (%s is missing); create it first '
                '(ip netns add %s, or the linuxnet.netns.netns module) or fix ansible_netns_name / the host name'
                % (name, path, name))
        if not is_usable_namespace(name):
            raise AnsibleConnectionFailure(
                'linuxnet.netns.netns: %s exists but is not a network namespace (an empty file that no '
                'namespace is mounted on); remove it with "ip netns delete %s" and create the namespace again'
                % (path, name))

    @staticmethod
    def _find_tools():
        tools = {}
        missing = []
        for tool in ('nsenter', 'unshare', 'mount'):
            tools[tool] = shutil.which(tool) or _in_sbin(tool)
            if not tools[tool]:
                missing.append(tool)
        if missing:
            raise AnsibleConnectionFailure(
                'linuxnet.netns.netns: %s not found on the controller; install util-linux '
                '(apt-get install util-linux / dnf install util-linux)' % ', '.join(missing))
        return tools

    def _namespace_argv(self, command_argv):
        """argv that runs ``command_argv`` inside only this host's network namespace."""
        tools = self._tools or self._find_tools()
        return [
            tools['nsenter'], '--net=%s' % namespace_path(self.netns_name), '--',
            tools['unshare'], '--mount', '--propagation', 'unchanged', '--',
            '/bin/sh', '-c', _ENTER_SCRIPT, _SCRIPT_NAME, tools['mount'],
        ] + list(command_argv)

    def _command_argv(self, cmd):
        """Ansible hands us a shell command line (or rarely an argv list): run it the way
        the local connection does, with the configured executable."""
        if isinstance(cmd, (text_type, binary_type)):
            executable = C.DEFAULT_EXECUTABLE.split()[0] if C.DEFAULT_EXECUTABLE else '/bin/sh'
            if not os.path.exists(to_bytes(executable, errors='surrogate_or_strict')):
                raise AnsibleError('failed to find the executable specified %s. Please verify if the executable '
                                   'exists and re-try.' % executable)
            return [executable, '-c', to_text(cmd)]
        return [to_text(arg) for arg in cmd]

    def exec_command(self, cmd, in_data=None, sudoable=True):
        """Run a command inside the namespace (stdin carries pipelined modules unchanged)."""
        ConnectionBase.exec_command(self, cmd, in_data=in_data, sudoable=sudoable)
        argv = self._namespace_argv(self._command_argv(cmd))
        display.vvv(u'EXEC {0}'.format(to_text(cmd)), host=self.netns_name)

        pty_primary = None
        stdin = subprocess.PIPE
        if sudoable and self.become and self.become.expect_prompt() and not self.get_option('pipelining'):
            # A password prompt needs a terminal; fall back to a pipe if none can be opened.
            try:
                pty_primary, stdin = pty.openpty()
            except OSError as exc:
                display.debug('Unable to open pty: %s' % exc)

        proc = subprocess.Popen(argv, cwd=self.cwd, stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        if pty_primary is not None:
            os.close(stdin)
        try:
            become_stdout, become_stderr = self._ensure_become_success(proc, pty_primary, sudoable)
            stdout, stderr = proc.communicate(in_data)
        finally:
            if pty_primary is not None:
                os.close(pty_primary)

        if proc.returncode != 0:
            self._raise_if_namespace_vanished()
        return proc.returncode, become_stdout + stdout, become_stderr + stderr

    def _raise_if_namespace_vanished(self):
        """A failing command in a namespace deleted since _connect is a lost host, not a task failure."""
        if not is_usable_namespace(self.netns_name):
            self._connected = False
            self._check_namespace(self.netns_name)

    def _run_in_namespace(self, argv, stdin=None, stdout=None):
        proc = subprocess.Popen(self._namespace_argv(argv), stdin=stdin or subprocess.DEVNULL,
                                stdout=stdout or subprocess.DEVNULL, stderr=subprocess.PIPE)
        stderr = proc.communicate()[1]
        if proc.returncode != 0:
            self._raise_if_namespace_vanished()
        return proc.returncode, to_text(stderr, errors='surrogate_or_replace').strip()

    def put_file(self, in_path, out_path):
        if not _depends_on_namespace(out_path):
            return super(Connection, self).put_file(in_path, out_path)
        ConnectionBase.put_file(self, in_path, out_path)
        display.vvv(u'PUT {0} TO {1} (inside the namespace)'.format(in_path, out_path), host=self.netns_name)
        try:
            source = open(to_bytes(in_path, errors='surrogate_or_strict'), 'rb')
        except (IOError, OSError) as exc:
            if exc.errno == errno.ENOENT:
                raise AnsibleFileNotFound('file or module does not exist: %s' % to_native(in_path))
            raise AnsibleError('failed to read %s: %s' % (to_native(in_path), exc))
        with source:
            rc, err = self._run_in_namespace(['dd', 'of=%s' % out_path, 'bs=65536', 'status=none'], stdin=source)
        if rc != 0:
            raise AnsibleError('failed to transfer file to %s inside namespace %s: %s'
                               % (to_native(out_path), self.netns_name, err))

    def fetch_file(self, in_path, out_path):
        if not _depends_on_namespace(in_path):
            return super(Connection, self).fetch_file(in_path, out_path)
        ConnectionBase.fetch_file(self, in_path, out_path)
        display.vvv(u'FETCH {0} TO {1} (inside the namespace)'.format(in_path, out_path), host=self.netns_name)
        with open(to_bytes(out_path, errors='surrogate_or_strict'), 'wb') as target:
            rc, err = self._run_in_namespace(['cat', '--', in_path], stdout=target)
        if rc != 0:
            raise AnsibleError('failed to fetch %s from namespace %s: %s' % (to_native(in_path), self.netns_name, err))


def _depends_on_namespace(path):
    path = os.path.normpath(to_text(path, errors='surrogate_or_strict'))
    return any(path == root or path.startswith(root + '/') for root in _NAMESPACE_DEPENDENT_ROOTS)


def _in_sbin(tool):
    """Tools live in /usr/sbin or /sbin, which a non-login PATH may lack."""
    for directory in ('/usr/sbin', '/sbin', '/usr/bin', '/bin'):
        candidate = os.path.join(directory, tool)
        if os.access(candidate, os.X_OK):
            return candidate
    return None
