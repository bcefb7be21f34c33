# -*- coding: utf-8 -*-
# Copyright (c) linuxnet.netns contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Entering network namespaces in-process, without ever creating one by accident.

A namespace is entered with setns(2) on the thread and left the same way (what
``pyroute2.netns.pushns``/``popns`` do, minus their habit of creating a missing namespace).
Links, addresses and routes go through the netlink codec of links.py once entered; only
the conntrack table (conntrack.py) needs pyroute2, which is imported there on first use (the
import costs ~0.2 s per module process). Here: whether pyroute2 is installed, for the kinds
that need it to fail early with an install hint.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import contextlib
import ctypes
import errno
import os
import socket
import struct

try:
    from importlib.util import find_spec
except ImportError:  # pragma: no cover - Python 2 is not supported by ansible-core 2.19 targets
    find_spec = None

# Whether the library can be imported, found without importing it (see the docstring).
HAS_PYROUTE2 = find_spec is not None and find_spec('pyroute2') is not None
PYROUTE2_IMPORT_ERROR = None if HAS_PYROUTE2 else 'ImportError: No module named pyroute2'

NETNS_RUN_DIR = '/run/netns'

PYROUTE2_INSTALL_HINT = (
    'the Python library pyroute2 is required on the managed host: install it with '
    '"apt-get install python3-pyroute2" (Debian/Ubuntu), "dnf install python3-pyroute2" '
    '(Fedora/RHEL) or "pip install pyroute2" into the interpreter Ansible uses '
    '(ansible_python_interpreter)'
)


class NamespaceMissing(Exception):
    """A namespace the caller named does not exist."""

    def __init__(self, name):
        self.name = name
        super(NamespaceMissing, self).__init__(
            'network namespace %r does not exist (%s/%s is missing); create it first '
            '(linuxnet.netns.netns) or fix the name' % (name, NETNS_RUN_DIR, name))


def require_pyroute2(module):
    """Fail the module with an install hint when pyroute2 is not installed."""
    if not HAS_PYROUTE2:
        module.fail_json(msg=PYROUTE2_INSTALL_HINT, exception=PYROUTE2_IMPORT_ERROR)


def namespace_path(name):
    return os.path.join(NETNS_RUN_DIR, name)


def list_namespaces():
    """Names of the namespaces in /run/netns that can really be opened.

    An empty placeholder file left by a failed mount is not a namespace; it is
    skipped so that it never counts as "present".
    """
    try:
        names = sorted(os.listdir(NETNS_RUN_DIR))
    except OSError as exc:
        if exc.errno == errno.ENOENT:
            return []
        raise
    return [name for name in names if is_usable_namespace(name)]


def is_usable_namespace(name):
    path = namespace_path(name)
    return os.path.exists(path) and _is_nsfs_mount(path)


def namespace_exists(name):
    return is_usable_namespace(name)


def _is_nsfs_mount(path):
    """A live namespace file is an nsfs bind mount; a stale placeholder is a plain file."""
    try:
        st = os.stat(path)
    except OSError:
        return False
    # nsfs inodes live on a different device than the tmpfs holding /run/netns.
    try:
        parent = os.stat(os.path.dirname(path))
    except OSError:
        return False
    return st.st_dev != parent.st_dev


@contextlib.contextmanager
def entered(name):
    """Run the body inside namespace ``name`` (None: stay where we are).

    The existence check comes first, so a missing name fails instead of being created.
    Only the calling thread moves; it moves back even when the body raises.
    """
    if not name:
        yield
        return
    if not namespace_exists(name):
        raise NamespaceMissing(name)
    home = os.open(_THREAD_NETNS, os.O_RDONLY)
    try:
        _enter_fd_of(name)
        try:
            yield
        finally:
            _setns(home, 'return to the original network namespace')
    finally:
        os.close(home)


# the thread's own namespace (setns moves the thread, not the whole process)
_THREAD_NETNS = '/proc/thread-self/ns/net'


def _enter_fd_of(name):
    target = os.open(namespace_path(name), os.O_RDONLY)
    try:
        _setns(target, 'enter network namespace %s' % name)
    finally:
        os.close(target)


def _setns(fd, what):
    _check(_libc().setns(fd, _CLONE_NEWNET), 'setns (%s)' % what)


# --- creating and removing namespaces ------------------------------------------------

_CLONE_NEWNET = 0x40000000
_MS_BIND = 4096
_MS_REC = 16384
_MS_SHARED = 1 << 20
_MNT_DETACH = 2


_LIBC = []


def _libc():
    if not _LIBC:
        _LIBC.append(ctypes.CDLL(None, use_errno=True))
    return _LIBC[0]


def _check(ret, what):
    if ret != 0:
        err = ctypes.get_errno()
        raise OSError(err, '%s: %s' % (what, os.strerror(err)))


def create_namespaces(names):
    """Create every namespace in ``names`` with one forked child.

    The child calls unshare(CLONE_NEWNET) and bind-mounts /proc/self/ns/net onto
    /run/netns/NAME for each name, which is what ``ip netns add`` does, without
    one process per namespace. Returns the names actually created.
    """
    names = list(names)
    if not names:
        return []
    _prepare_run_dir()
    for name in names:
        path = namespace_path(name)
        if not os.path.exists(path):
            fd = os.open(path, os.O_RDONLY | os.O_CREAT | os.O_EXCL, 0o444)
            os.close(fd)
    rfd, wfd = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        os.close(rfd)
        status = 0
        message = b''
        try:
            libc = _libc()
            for name in names:
                _check(libc.unshare(_CLONE_NEWNET), 'unshare(CLONE_NEWNET)')
                target = namespace_path(name).encode()
                _check(libc.mount(b'/proc/self/ns/net', target, b'none', _MS_BIND, None),
                       'bind mount of %s' % name)
        except Exception as exc:  # report to the parent, never raise in a forked child
            status = 1
            message = str(exc).encode('utf-8', 'replace')
        os.write(wfd, message)
        os.close(wfd)
        os._exit(status)
    os.close(wfd)
    chunks = []
    while True:
        chunk = os.read(rfd, 4096)
        if not chunk:
            break
        chunks.append(chunk)
    os.close(rfd)
    status = os.waitpid(pid, 0)[1]
    created = [name for name in names if is_usable_namespace(name)]
    if status != 0:
        failed = [name for name in names if name not in created]
        for name in failed:
            _remove_placeholder(name)
        raise OSError(errno.EIO, 'creating namespaces failed (%s): %s' % (
            ', '.join(failed), b''.join(chunks).decode('utf-8', 'replace')))
    return created


def ensure_shared_run_dir():
    """Make /run/netns a shared mount point if it is not one yet (public form of
    _prepare_run_dir, used by the netns connection plugin before it enters a host)."""
    _prepare_run_dir()


def _prepare_run_dir():
    """Make /run/netns exist and be a shared mount point, as iproute2 does.

    Shared propagation is what lets a namespace created from inside another mount
    namespace (a task run through the netns connection plugin) be seen by everyone.
    """
    if not os.path.isdir(NETNS_RUN_DIR):
        os.makedirs(NETNS_RUN_DIR, 0o755)
    libc = _libc()
    target = NETNS_RUN_DIR.encode()
    if libc.mount(b'', target, b'none', _MS_SHARED | _MS_REC, None) == 0:
        return
    if ctypes.get_errno() != errno.EINVAL:
        return
    # Not a mount point yet: bind it onto itself, then share it.
    _check(libc.mount(target, target, b'none', _MS_BIND | _MS_REC, None), 'bind mount of /run/netns')
    _check(libc.mount(b'', target, b'none', _MS_SHARED | _MS_REC, None), 'make /run/netns shared')


def _remove_placeholder(name):
    try:
        os.unlink(namespace_path(name))
    except OSError:
        pass


def remove_namespace(name):
    """Unmount and remove /run/netns/NAME (what ``ip netns delete`` does)."""
    path = namespace_path(name)
    libc = _libc()
    ret = libc.umount2(path.encode(), _MNT_DETACH)
    if ret != 0 and ctypes.get_errno() not in (errno.EINVAL, errno.ENOENT):
        err = ctypes.get_errno()
        raise OSError(err, 'umount %s: %s' % (path, os.strerror(err)))
    try:
        os.unlink(path)
    except OSError as exc:
        if exc.errno != errno.ENOENT:
            raise


# SO_NETNS_COOKIE (Linux 5.14): a 64-bit number the kernel gives each network namespace
# once per boot and never reuses, unlike the nsfs inode a later namespace may get again.
_SO_NETNS_COOKIE = 71


def namespace_key(name=None):
    """A key that names namespace ``name`` (None: the one this thread is in) and no later
    namespace: 'cookie:N' from SO_NETNS_COOKIE, or 'inode:N' on kernels without it."""
    with entered(name):
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            raw = probe.getsockopt(socket.SOL_SOCKET, _SO_NETNS_COOKIE, 8)
            return 'cookie:%d' % struct.unpack('=Q', raw)[0]
        except OSError:
            return 'inode:%d' % os.stat('/proc/thread-self/ns/net').st_ino
        finally:
            probe.close()


def pids_by_namespace():
    """A function: namespace name -> PIDs of the processes in it, all answered from one
    scan of /proc made on first use (a teardown of N namespaces would otherwise read
    every /proc/PID/ns/net N times)."""
    scanned = []

    def pids_of(name):
        try:
            target = os.stat(namespace_path(name))
        except OSError:
            return []
        if not scanned:
            scanned.append(_processes_by_namespace())
        return sorted(scanned[0].get((target.st_dev, target.st_ino), ()))
    return pids_of


def _processes_by_namespace():
    found = {}
    for entry in os.listdir('/proc'):
        if not entry.isdigit():
            continue
        try:
            st = os.stat('/proc/%s/ns/net' % entry)
        except OSError:
            continue
        found.setdefault((st.st_dev, st.st_ino), []).append(int(entry))
    return found
