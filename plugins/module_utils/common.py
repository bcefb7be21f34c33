# -*- coding: utf-8 -*-
# Copyright (c) linuxnet.netns contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""What every module of the collection shares: single-object vs list input, the
read-compare-write report (before/after/diff/commands), rollback of a failed call,
and turning our exceptions into clear failures."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import copy
import errno
import fcntl
import os
import time
import traceback

from ansible_collections.linuxnet.netns.plugins.module_utils.netns_session import NamespaceMissing
from ansible_collections.linuxnet.netns.plugins.module_utils.validation import ValidationError

# Environment for every command we run: parseable, untranslated output.
COMMAND_ENVIRON = {'LC_ALL': 'C', 'LANG': 'C'}


# One lock for every state-changing call on a host: two calls that read the same state
# before either writes would both apply the same change (duplicate jumps, EEXIST).
STATE_LOCK_PATH = '/run/linuxnet-netns.lock'
STATE_LOCK_TIMEOUT = 300
# Locks this process already holds: netns_topology runs several modules' calls in one
# process, and a second flock on a new descriptor of the same file would wait for itself.
_HELD_LOCKS = {}


def acquire_state_lock(module, path=STATE_LOCK_PATH, timeout=STATE_LOCK_TIMEOUT):
    """Serialize read-compare-write against other calls of the collection on this host.

    Held until the module process exits (the kernel drops a flock with its last fd), so the
    caller takes it once, after validation and before reading state. Check mode writes
    nothing and does not take it.
    """
    if module.check_mode:
        return None
    if path in _HELD_LOCKS:
        return _HELD_LOCKS[path]
    fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o600)
    deadline = time.time() + timeout
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            _HELD_LOCKS[path] = fd
            return fd
        except (IOError, OSError) as exc:
            if exc.errno not in (errno.EAGAIN, errno.EACCES):
                raise
        if time.time() > deadline:
            os.close(fd)
            module.fail_json(msg='another linuxnet.netns call held %s for more than %d s; nothing was changed'
                             % (path, timeout))
        time.sleep(0.02)


def collect_items(params, list_key, item_keys, defaults_from_top=('state',)):
    """The objects one call manages, with their list path for error messages.

    Either the list option ``list_key`` or the top-level options ``item_keys`` give
    the objects (the argument spec makes them mutually exclusive). Options named in
    ``defaults_from_top`` also act as defaults for list items that leave them unset.
    Returns a list of (field_prefix, item_dict).
    """
    listed = params.get(list_key)
    if listed is None:
        item = dict((key, params.get(key)) for key in item_keys)
        return [('', item)]
    items = []
    for index, raw in enumerate(listed):
        item = copy.deepcopy(raw)
        for key in defaults_from_top:
            if item.get(key) is None and params.get(key) is not None:
                item[key] = params[key]
        items.append(('%s[%d].' % (list_key, index), item))
    return items


class Report(object):
    """Collects what a call would change, for changed/diff/commands/before/after.

    ``before`` and ``after`` are lists of human-readable lines (one object or setting
    per line); the diff is their sorted text, so ``--diff`` shows exactly what moves.
    """

    def __init__(self):
        self.before = []
        self.after = []
        self.commands = []

    def record(self, before_line, after_line, commands=()):
        if before_line is not None:
            self.before.append(before_line)
        if after_line is not None:
            self.after.append(after_line)
        self.commands.extend(commands)

    def command(self, *commands):
        self.commands.extend(commands)

    @property
    def changed(self):
        return bool(self.commands) or sorted(self.before) != sorted(self.after)

    def diff(self, header=''):
        return {
            'before_header': '%s (before)' % header if header else 'before',
            'after_header': '%s (after)' % header if header else 'after',
            'before': _lines(self.before),
            'after': _lines(self.after),
        }

    def result(self, module, header='', **extra):
        result = dict(changed=self.changed, commands=list(self.commands))
        if module._diff:
            result['diff'] = self.diff(header)
        result.update(extra)
        return result


def _lines(lines):
    return ''.join('%s\n' % line for line in sorted(lines))


class Rollback(object):
    """Undo actions registered while a call creates things; run them in reverse when
    the call fails half-way, so a failed call leaves nothing of its own behind."""

    def __init__(self):
        self._undo = []

    @classmethod
    def for_call(cls, module):
        """The rollback a module's changes register with: a new one, or the one that
        netns_topology shares across its parts (``module.shared_rollback``), so that a
        failing part also undoes what the parts before it created."""
        shared = getattr(module, 'shared_rollback', None)
        return shared if shared is not None else cls()

    def register(self, description, func, *args, **kwargs):
        self._undo.append((description, func, args, kwargs))

    def run(self):
        errors = []
        while self._undo:
            description, func, args, kwargs = self._undo.pop()
            try:
                func(*args, **kwargs)
            except Exception as exc:  # keep undoing the rest; report what could not be undone
                errors.append('%s: %s' % (description, exc))
        return errors

    def discard(self):
        self._undo = []


def fail_from_exception(module, exc, rollback=None, **extra):
    """Fail the module cleanly for our known exception types, after rolling back."""
    undo_errors = rollback.run() if rollback is not None else []
    if isinstance(exc, ValidationError):
        extra.setdefault('field', exc.field)
        extra.setdefault('value', exc.value)
        msg = 'invalid input: %s' % exc
    elif isinstance(exc, NamespaceMissing):
        extra.setdefault('namespace', exc.name)
        msg = str(exc)
    else:
        msg = '%s: %s' % (type(exc).__name__, exc)
        extra.setdefault('exception', traceback.format_exc())
    if rollback is not None:
        msg += '; everything this call had created was removed' if not undo_errors else (
            '; rollback incomplete: %s' % '; '.join(undo_errors))
    module.fail_json(msg=msg, **extra)


def fail_on_errors(module, errors):
    """Fail with the first input error as the message and every one in ``errors``, so one
    run names all that is wrong; does nothing when ``errors`` is empty."""
    if errors:
        fail_from_exception(module, errors[0], errors=[str(error) for error in errors])


def format_command(argv):
    """An argv list as an operator would type it (for reports only, never executed)."""
    return ' '.join(_quote(arg) for arg in argv)


def _quote(arg):
    arg = str(arg)
    safe = all(c.isalnum() or c in '@%+=:,./-_' for c in arg)
    return arg if arg and safe else "'" + arg.replace("'", "'\"'\"'") + "'"
