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
import traceback

from ansible_collections.linuxnet.netns.plugins.module_utils.netns_session import NamespaceMissing
from ansible_collections.linuxnet.netns.plugins.module_utils.validation import ValidationError

# Environment for every command we run: parseable, untranslated output.
COMMAND_ENVIRON = {'LC_ALL': 'C', 'LANG': 'C'}


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

    def result(self, diff, header='', **extra):
        result = dict(changed=self.changed, commands=list(self.commands))
        if diff:
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


class KindError(Exception):
    """A call that failed: ``msg`` and the other fields of the result (what fail_json gets)."""

    def __init__(self, msg, **fields):
        super(KindError, self).__init__(msg)
        self.msg = msg
        self.fields = fields


def failure(exc, rollback=None, **extra):
    """The KindError for ``exc`` (our known exception types get a clear message, a KindError
    keeps its own), after running ``rollback``, whose outcome the message tells."""
    undo_errors = rollback.run() if rollback is not None else []
    if isinstance(exc, KindError):
        msg = exc.msg
        extra = dict(exc.fields, **extra)
    elif isinstance(exc, ValidationError):
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
    return KindError(msg, **extra)


def fail_from_exception(module, exc, rollback=None, **extra):
    """Fail the module cleanly for our known exception types, after rolling back."""
    error = failure(exc, rollback, **extra)
    module.fail_json(msg=error.msg, **error.fields)


def check_errors(errors):
    """Raise a KindError with the first input error as the message and every one in
    ``errors``, so one run names all that is wrong; does nothing when ``errors`` is empty."""
    if errors:
        raise failure(errors[0], errors=[str(error) for error in errors])


def format_command(argv):
    """An argv list as an operator would type it (for reports only, never executed)."""
    return ' '.join(_quote(arg) for arg in argv)


def _quote(arg):
    arg = str(arg)
    safe = all(c.isalnum() or c in '@%+=:,./-_' for c in arg)
    return arg if arg and safe else "'" + arg.replace("'", "'\"'\"'") + "'"
