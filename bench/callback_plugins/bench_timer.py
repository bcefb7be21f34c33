# -*- coding: utf-8 -*-
# Copyright (c) linuxnet.netns contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
name: bench_timer
type: aggregate
short_description: Per-task wall time for the linuxnet.netns benchmark
description:
  - Appends one JSON line per finished task and host (task name, action, seconds since the task
    started, changed; for a changed or failed task also its C(commands) and C(msg)) to the file
    named by the environment variable E(LNB_TASK_LOG).
  - Does nothing when E(LNB_TASK_LOG) is not set.
requirements:
  - enabled in C(callbacks_enabled) (bench/run.py does it)
'''

import json
import os
import time

from ansible.plugins.callback import CallbackBase


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = 'aggregate'
    CALLBACK_NAME = 'bench_timer'
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self):
        super(CallbackModule, self).__init__()
        self._path = os.environ.get('LNB_TASK_LOG')
        self._started = {}

    def v2_playbook_on_task_start(self, task, is_conditional):
        self._started[task._uuid] = time.monotonic()

    def _record(self, result, status):
        if not self._path:
            return
        task = result._task
        started = self._started.get(task._uuid, time.monotonic())
        entry = {
            'task': task.get_name(),
            'action': task.action,
            'host': result._host.get_name(),
            'seconds': round(time.monotonic() - started, 4),
            'status': status,
            'changed': result.is_changed(),
        }
        if entry['changed'] or status == 'failed':
            # What moved, so that a re-run that is not idempotent can say why. Only then is
            # the result read: reading it makes ansible-core 2.19 convert the whole result
            # (0.3 s for a module result of a few hundred kB), which would be the bench's
            # cost, not the role's.
            data = result._result
            entry['commands'] = (data.get('commands') or [])[:20]
            entry['msg'] = str(data.get('msg', ''))[:2000]
        with open(self._path, 'a') as handle:
            handle.write(json.dumps(entry) + '\n')

    def v2_runner_on_ok(self, result):
        self._record(result, 'ok')

    def v2_runner_on_failed(self, result, ignore_errors=False):
        self._record(result, 'failed')

    def v2_runner_on_skipped(self, result):
        self._record(result, 'skipped')

    def v2_runner_on_unreachable(self, result):
        self._record(result, 'unreachable')
