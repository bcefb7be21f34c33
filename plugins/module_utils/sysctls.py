# -*- coding: utf-8 -*-
# Copyright (c) linuxnet.netns contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Forwarding sysctls of a network namespace.

/proc/sys/net shows the network namespace of the process that opens the file, so we
enter the namespace in-process (netns_session.entered) and then open the files; no
``ip netns exec sysctl`` subprocess is needed.

The kernel couples some of these settings, and the plan models it so check mode
predicts exactly what a real run does:
- writing a new value to net.ipv4.ip_forward also sets net.ipv4.conf.{all,default,*}.forwarding;
- writing a new value to net.ipv6.conf.all.forwarding also sets conf.default and every
  interface's conf.IFACE.forwarding.
Global settings are therefore written first, per-interface settings after them.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import errno
import json
import os

from ansible_collections.linuxnet.netns.plugins.module_utils.common import format_command
from ansible_collections.linuxnet.netns.plugins.module_utils.netns_session import entered, namespace_key
from ansible_collections.linuxnet.netns.plugins.module_utils.validation import (
    ValidationError,
    check_ifname,
    check_netns_name,
)

PROC_SYS = '/proc/sys'
IPV4_FORWARD = 'net/ipv4/ip_forward'
IPV6_ALL = 'net/ipv6/conf/all/forwarding'
IPV6_DEFAULT = 'net/ipv6/conf/default/forwarding'
IPV4_CONF_DIR = 'net/ipv4/conf'
IPV6_CONF_DIR = 'net/ipv6/conf'
# conf/ entries that are not interfaces
CONF_PSEUDO = ('all', 'default')

ITEM_KEYS = ('namespace', 'ipv4', 'ipv6', 'ipv6_default', 'interfaces', 'persist')


def interface_path(version, name):
    return '%s/%s/forwarding' % (IPV4_CONF_DIR if version == 4 else IPV6_CONF_DIR, name)


def sysctl_key(path):
    """The name sysctl(8) and sysctl.d use: dots between components, and a dot inside a
    component (an interface such as eth0.100) written as '/'."""
    return '.'.join(part.replace('.', '/') for part in path.split('/'))


class Setting(object):
    """One sysctl to hold a value; ``field`` is the option that asked for it."""

    def __init__(self, field, path, value):
        self.field = field
        self.path = path
        self.value = value

    @property
    def key(self):
        return sysctl_key(self.path)


class WantedSettings(object):
    """Everything one item asks for, in the order it must be written."""

    def __init__(self, field, namespace, settings, interfaces, persist):
        self.field = field
        self.namespace = namespace
        self.settings = settings
        self.interfaces = interfaces  # [(field, name, versions)]
        self.persist = persist

    @property
    def label(self):
        return self.namespace or ''


# --- validation without the kernel ----------------------------------------------------------

def validate_settings(field, item):
    namespace = item.get('namespace')
    if namespace is not None:
        check_netns_name(field + 'namespace', namespace)
    settings = []
    for option, path in (('ipv4', IPV4_FORWARD), ('ipv6', IPV6_ALL), ('ipv6_default', IPV6_DEFAULT)):
        if item.get(option) is not None:
            settings.append(Setting(field + option, path, _as_flag(field + option, item[option])))
    interfaces = []
    seen = {}
    for index, entry in enumerate(item.get('interfaces') or []):
        entry_field = '%sinterfaces[%d].' % (field, index)
        name, versions = _validate_interface(entry_field, entry, seen)
        seen[name] = entry_field
        interfaces.append((entry_field + 'name', name, sorted(versions)))
        for version in (4, 6):
            if version in versions:
                option = 'ipv%d' % version
                settings.append(Setting(entry_field + option, interface_path(version, name), versions[version]))
    if not settings:
        raise ValidationError(field + 'ipv4', None, 'nothing to set: give ipv4, ipv6, ipv6_default or interfaces')
    persist = _validate_persist(field + 'persist', item.get('persist'))
    return WantedSettings(field, namespace, settings, interfaces, persist)


def _validate_interface(field, entry, seen):
    if not isinstance(entry, dict):
        raise ValidationError(field.rstrip('.'), entry, 'expected a dict with name, ipv4 and/or ipv6')
    name = entry.get('name')
    check_ifname(field + 'name', name)
    if name in CONF_PSEUDO:
        raise ValidationError(field + 'name', name,
                              '"%s" is not an interface: use the options ipv4, ipv6 or ipv6_default' % name)
    if name in seen:
        raise ValidationError(field + 'name', name, 'duplicates %sname' % seen[name])
    versions = {}
    for version in (4, 6):
        value = entry.get('ipv%d' % version)
        if value is not None:
            versions[version] = _as_flag('%sipv%d' % (field, version), value)
    if not versions:
        raise ValidationError(field + 'ipv4', None, 'set ipv4, ipv6 or both for interface %s' % name)
    return name, versions


def _as_flag(field, value):
    if isinstance(value, bool):
        return int(value)
    raise ValidationError(field, value, 'expected true or false')


def _validate_persist(field, path):
    if path is None:
        return None
    if not os.path.isabs(path):
        raise ValidationError(field, path, 'must be an absolute path such as /etc/sysctl.d/90-netns-forward.conf')
    if os.path.isdir(path):
        raise ValidationError(field, path, 'is a directory; name the file to write')
    if os.path.lexists(path) and not os.path.isfile(path):
        raise ValidationError(field, path, 'exists and is not a regular file')
    parent = os.path.dirname(path)
    if not os.path.isdir(parent):
        raise ValidationError(field, path, 'directory %s does not exist' % parent)
    return path


def check_unique_targets(wanted_list):
    """One item per namespace and per persist file, so no two items fight over a value."""
    errors = []
    namespaces, files = {}, {}
    for wanted in wanted_list:
        if wanted.namespace in namespaces:
            errors.append(ValidationError(wanted.field + 'namespace', wanted.namespace,
                                          'duplicates %snamespace: give each namespace once'
                                          % namespaces[wanted.namespace].field))
        else:
            namespaces[wanted.namespace] = wanted
        if wanted.persist is None:
            continue
        if wanted.persist in files:
            errors.append(ValidationError(wanted.field + 'persist', wanted.persist,
                                          'duplicates %spersist: give each item its own file'
                                          % files[wanted.persist].field))
        else:
            files[wanted.persist] = wanted
    return errors


# --- reading inside the namespace -------------------------------------------------------------

class NamespaceSysctls(object):
    """The forwarding values of one namespace: ip_forward, and conf/*/forwarding of
    both families (all, default and every interface), read in one go."""

    def __init__(self, namespace, values, ipv4_names, ipv6_names):
        self.namespace = namespace
        self.values = values  # path -> int
        self.ipv4_names = ipv4_names
        self.ipv6_names = ipv6_names  # None when IPv6 is disabled in this kernel

    @property
    def label(self):
        return 'namespace %s' % self.namespace if self.namespace else 'the current namespace'


def read_namespace(namespace):
    with entered(namespace):
        current = read_current()
    current.namespace = namespace
    return current


def read_current():
    """Read the forwarding sysctls of the namespace this process is in now."""
    values = {IPV4_FORWARD: read_value(IPV4_FORWARD)}
    ipv4_names = _conf_entries(IPV4_CONF_DIR)
    for name in ipv4_names:
        _read_into(values, interface_path(4, name))
    ipv6_names = None
    if os.path.isdir(os.path.join(PROC_SYS, IPV6_CONF_DIR)):
        ipv6_names = _conf_entries(IPV6_CONF_DIR)
        for name in ipv6_names:
            _read_into(values, interface_path(6, name))
    return NamespaceSysctls(None, values, _interfaces_only(ipv4_names), _interfaces_only(ipv6_names))


def _conf_entries(directory):
    return sorted(os.listdir(os.path.join(PROC_SYS, directory)))


def _interfaces_only(names):
    return None if names is None else [name for name in names if name not in CONF_PSEUDO]


def _read_into(values, path):
    try:
        values[path] = read_value(path)
    except (IOError, OSError) as exc:  # an interface vanished while we listed conf/
        if exc.errno != errno.ENOENT:
            raise


def read_value(path):
    with open(os.path.join(PROC_SYS, path)) as handle:
        return int(handle.read().strip())


def write_value(path, value):
    with open(os.path.join(PROC_SYS, path), 'w') as handle:
        handle.write('%d\n' % value)


def check_against_namespace(wanted, current):
    """Named interfaces exist and IPv6 is available where IPv6 settings are asked for; raises
    the first problem (namespace_errors lists them all)."""
    errors = namespace_errors(wanted, current)
    if errors:
        raise errors[0]


def namespace_errors(wanted, current):
    """Every reason the namespace cannot take these settings: IPv6 missing where IPv6 is
    asked for, and each named interface that does not exist, so that one run names them all."""
    errors = []
    wants_ipv6 = any(setting.path.startswith('net/ipv6/') for setting in wanted.settings)
    if wants_ipv6 and current.ipv6_names is None:
        field = next(setting.field for setting in wanted.settings if setting.path.startswith('net/ipv6/'))
        return [ValidationError(field, True, 'IPv6 is not available in %s (no /proc/sys/net/ipv6)' % current.label)]
    for field, name, versions in wanted.interfaces:
        missing_v4 = 4 in versions and name not in current.ipv4_names
        missing_v6 = 6 in versions and name not in current.ipv6_names
        if missing_v4 or missing_v6:
            errors.append(ValidationError(field, name, 'interface %s does not exist in %s (it has: %s)'
                                          % (name, current.label, ', '.join(current.ipv4_names) or 'no interfaces')))
    return errors


# --- comparing and planning --------------------------------------------------------------------

class SysctlPlan(object):
    """The writes one item needs, with before/after values of the keys it names."""

    def __init__(self, wanted, writes, before, after):
        self.wanted = wanted
        self.writes = writes  # [Setting] in write order
        self.before = before  # key -> int
        self.after = after  # key -> int

    @property
    def changed(self):
        return bool(self.writes)


def plan_settings(wanted, current):
    """Which settings need writing, simulating the kernel's propagation of global
    writes so that later per-interface settings are compared with what they will be."""
    predicted = dict(current.values)
    writes = []
    for setting in wanted.settings:
        if predicted.get(setting.path) == setting.value:
            continue
        writes.append(setting)
        predicted.update(propagated_values(setting.path, setting.value, predicted))
    before = dict((setting.key, current.values.get(setting.path)) for setting in wanted.settings)
    after = dict((setting.key, predicted.get(setting.path)) for setting in wanted.settings)
    return SysctlPlan(wanted, writes, before, after)


def propagated_values(path, value, values):
    """Every value that writing ``value`` to ``path`` sets (including ``path`` itself)."""
    result = {path: value}
    if path == IPV4_FORWARD:
        prefix = IPV4_CONF_DIR + '/'
    elif path == IPV6_ALL:
        prefix = IPV6_CONF_DIR + '/'
    else:
        return result
    for other in values:
        if other.startswith(prefix) and other.endswith('/forwarding'):
            result[other] = value
    return result


# --- applying -------------------------------------------------------------------------------------

def apply_plan(plan, original, rollback):
    """Write the planned values inside the item's namespace. Rollback restores every
    forwarding value of the namespace, since one global write changes many of them."""
    if not plan.writes:
        return
    namespace = plan.wanted.namespace
    rollback.register('restore forwarding sysctls of %s' % (namespace or 'the current namespace'),
                      restore_values, namespace, original.values)
    with entered(namespace):
        for setting in plan.writes:
            write_value(setting.path, setting.value)


def restore_values(namespace, values):
    """Put back ``values`` (path -> int), globals first since they overwrite the rest."""
    with entered(namespace):
        for path in sorted(values, key=_restore_order):
            try:
                if read_value(path) != values[path]:
                    write_value(path, values[path])
            except (IOError, OSError) as exc:
                if exc.errno != errno.ENOENT:
                    raise


def _restore_order(path):
    return (path not in (IPV4_FORWARD, IPV6_ALL), path)


# --- reporting and persistence ---------------------------------------------------------------------

def plan_commands(plan):
    """sysctl -w commands an operator would have typed (inside the namespace)."""
    commands = []
    for setting in plan.writes:
        argv = ['sysctl', '-w', '%s=%d' % (setting.key, setting.value)]
        if plan.wanted.namespace:
            argv = ['ip', 'netns', 'exec', plan.wanted.namespace] + argv
        commands.append(format_command(argv))
    return commands


def report_lines(plan):
    prefix = '%s: ' % plan.wanted.namespace if plan.wanted.namespace else ''
    before = ['%s%s = %s' % (prefix, key, value) for key, value in plan.before.items()]
    after = ['%s%s = %s' % (prefix, key, value) for key, value in plan.after.items()]
    return before, after


def persist_content(wanted):
    """The sysctl.d file for one item: a header, then ``key = value`` in write order."""
    lines = ['# Forwarding sysctls written by linuxnet.netns.sysctl_forward.']
    if wanted.namespace:
        lines.extend([
            '# They belong to network namespace %s. sysctl.d files are applied to the root' % wanted.namespace,
            '# network namespace at boot, so for this namespace this file is a record only.',
        ])
    lines.extend('%s = %d' % (setting.key, setting.value) for setting in wanted.settings)
    return '\n'.join(lines) + '\n'


def read_file(path):
    """Current content of a persist file ('' when it does not exist yet)."""
    try:
        with open(path) as handle:
            return handle.read()
    except (IOError, OSError) as exc:
        if exc.errno == errno.ENOENT:
            return ''
        raise


# --- the record of replaced values (record_dir / restore) ----------------------------------------

RECORD_FORMAT = 1


def sysctl_path(key):
    """Inverse of sysctl_key: net.ipv4.conf.eth0/100.forwarding -> net/ipv4/conf/eth0.100/forwarding."""
    return '/'.join(part.replace('/', '.') for part in key.split('.'))


def validate_record_dir(field, path):
    if path is None:
        return None
    if not os.path.isabs(path):
        raise ValidationError(field, path, 'must be an absolute path such as /run/linuxnet-netns')
    if os.path.lexists(path) and not os.path.isdir(path):
        raise ValidationError(field, path, 'exists and is not a directory')
    return path


def record_path(record_dir, namespace):
    """The record of one network namespace, named after the namespace's key (its netns
    cookie): hosts that are namespaces of one machine share /run but each has its own
    sysctls, and a later namespace that gets the same inode must not inherit the record."""
    key = namespace_key(namespace).replace(':', '-')
    return os.path.join(record_dir, 'forwarding-%s.json' % key)


def read_record(field, path):
    """(file content, {key: value}) of a record; ('', {}) when there is none."""
    content = read_file(path)
    if not content:
        return '', {}
    try:
        data = json.loads(content)
        before = data['before']
        if not isinstance(before, dict):
            raise TypeError('"before" is not a mapping')
        values = dict((str(key), _as_recorded_value(key, value)) for key, value in before.items())
    except (ValueError, KeyError, TypeError) as exc:
        raise ValidationError(field, path, 'is not a record written by this module (%s); '
                                           'remove it or point record_dir elsewhere' % exc)
    for key in values:
        if not is_forwarding_path(sysctl_path(key)):
            raise ValidationError(field, path, 'records %s, which is not a forwarding sysctl' % key)
    return content, values


def _as_recorded_value(key, value):
    if isinstance(value, bool) or value not in (0, 1):
        raise TypeError('%s holds %r instead of 0 or 1' % (key, value))
    return value


def is_forwarding_path(path):
    if path in (IPV4_FORWARD, IPV6_ALL, IPV6_DEFAULT):
        return True
    parts = path.split('/')
    return (len(parts) == 5 and '/'.join(parts[:3]) in (IPV4_CONF_DIR, IPV6_CONF_DIR)
            and parts[4] == 'forwarding' and parts[3] not in ('', '.', '..'))


def recorded_values(plan, recorded, original):
    """The record after ``plan``: the first value each written key had is kept, so a record
    always holds what was there before this module first changed it. A global write also
    sets every interface's value (``original``, path -> int, is what they were), so those
    are recorded too: a restore puts back an interface the global write overwrote."""
    values = dict(recorded)
    for setting in plan.writes:
        for path in propagated_values(setting.path, setting.value, original):
            if path in original:
                values.setdefault(sysctl_key(path), original[path])
    return values


def record_content(namespace, values):
    data = {'format': RECORD_FORMAT, 'written_by': 'linuxnet.netns.sysctl_forward',
            'namespace': namespace or None, 'before': values}
    return json.dumps(data, indent=2, sort_keys=True) + '\n'


def restore_settings(field, namespace, values, current):
    """WantedSettings that put the recorded values back: global keys first (writing them
    resets the per-interface ones); interfaces that no longer exist are left out."""
    settings = []
    for key in sorted(values, key=lambda key: _restore_order(sysctl_path(key))):
        path = sysctl_path(key)
        if path == IPV4_FORWARD or path in current.values:
            settings.append(Setting(field, path, values[key]))
    return WantedSettings(field, namespace, settings, [], None)
