# -*- coding: utf-8 -*-
# Copyright (c) linuxnet.netns contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The library API of a kind of state. Each ``<kind>_call.py`` defines ``argument_spec()``,
``ARGUMENT_RULES`` and five functions that ``execute`` calls in this order:

- ``validate(params) -> spec``: every item checked before anything is read or changed;
- ``read(spec, context) -> current``: the state the call compares against, read once;
- ``plan(spec, current, context) -> plan``: the changes, their commands and diff lines;
- ``apply(plan, context)``: only outside check mode; every change registers its undo with
  ``context.rollback``;
- ``result(plan, context) -> dict``: what the module returns.

Any exception they raise becomes a ``common.KindError`` (``common.failure``: a clear message for
our exception types; one raised in apply first undoes the call's changes). None of them exits:
the kind's own module (``run_module``) and netns_topology own exit_json/fail_json. ``CallContext`` is what a call
gets besides its params."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import errno
import fcntl
import os
import time

from ansible_collections.linuxnet.netns.plugins.module_utils.common import COMMAND_ENVIRON, KindError, Rollback, failure
from ansible_collections.linuxnet.netns.plugins.module_utils.netns_session import (
    HAS_PYROUTE2, PYROUTE2_IMPORT_ERROR, PYROUTE2_INSTALL_HINT)

# One lock for every state-changing call on a host: two calls that read the same state
# before either writes would both apply the same change (duplicate jumps, EEXIST).
STATE_LOCK_PATH = '/run/linuxnet-netns.lock'
STATE_LOCK_TIMEOUT = 300
# path -> the fd by which this process holds that lock. A flock belongs to an open file, so
# a second open of the path in this process would wait for itself; the calls of one process
# run one after the other and share the one they took.
HELD_LOCKS = {}


def acquire_state_lock(path, timeout):
    """An fd holding the flock on ``path`` (the kernel drops it with the process's last fd);
    KindError after ``timeout`` seconds of another holder."""
    if path in HELD_LOCKS:
        return HELD_LOCKS[path]
    fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o600)
    deadline = time.time() + timeout
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            HELD_LOCKS[path] = fd
            return fd
        except (IOError, OSError) as exc:
            if exc.errno not in (errno.EAGAIN, errno.EACCES):
                raise
        if time.time() > deadline:
            os.close(fd)
            raise KindError('another linuxnet.netns call held %s for more than %d s; nothing was changed'
                            % (path, timeout))
        time.sleep(0.02)


class CallContext(object):
    """One module call: check and diff mode, the Rollback its changes register with, its
    warnings, the state lock, and the real AnsibleModule, used only to run commands
    (``NetnsRunner(context.module, ...)``, ``run_command``, ``atomic_move``). netns_topology
    passes one context to all its parts: they share the rollback (a failing part undoes the
    earlier parts' creations) and the lock, and ``prefix`` names the part in warnings."""

    def __init__(self, module):
        module.run_command_environ_update = COMMAND_ENVIRON
        self.module = module
        self.check_mode = module.check_mode
        self.diff = module._diff
        self.rollback = Rollback()
        self.prefix = ''
        self.lock_fd = None

    def warn(self, warning):
        self.module.warn(self.prefix + warning)

    def lock(self):
        """Serialize read-compare-write against other calls of the collection on this host:
        taken once per process, after validation and before reading state, held until the
        process exits. Check mode writes nothing and does not take it."""
        if not self.check_mode and self.lock_fd is None:
            self.lock_fd = acquire_state_lock(STATE_LOCK_PATH, STATE_LOCK_TIMEOUT)


def check_pyroute2():
    if not HAS_PYROUTE2:
        raise KindError(PYROUTE2_INSTALL_HINT, exception=PYROUTE2_IMPORT_ERROR)


def execute(call, params, context):
    """One call of the kind whose API is ``call`` (a ``<kind>_call`` module): its result
    dict, or KindError. A failure before apply changed nothing; a failure in apply undoes
    what the call registered, unless apply raised a KindError itself (it said what it did).
    A ``current`` that holds resources (veth's namespace fds) has a ``close()``."""
    current = None
    try:
        try:
            spec = call.validate(params)
            context.lock()
            current = call.read(spec, context)
            plan = call.plan(spec, current, context)
        except Exception as exc:
            raise failure(exc)
        if not context.check_mode:
            try:
                call.apply(plan, context)
            except KindError:
                raise
            except Exception as exc:
                raise failure(exc, context.rollback)
        try:
            return call.result(plan, context)
        except Exception as exc:  # what was applied stays: it is what was asked for
            raise failure(exc)
    finally:
        if hasattr(current, 'close'):
            current.close()


def run_module(module, call):
    """A state module's main: its kind's call, then exit_json or fail_json."""
    try:
        result = execute(call, module.params, CallContext(module))
    except KindError as error:
        module.fail_json(msg=error.msg, **error.fields)
    module.exit_json(**result)
