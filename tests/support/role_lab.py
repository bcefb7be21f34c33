# SPDX-License-Identifier: GPL-3.0-or-later
"""The netns_nat role run for real: ansible-playbook against hosts that are namespaces
(the linuxnet.netns.netns connection plugin), a small lab of uniquely named namespaces
to run it on, and the outcome read back per host and per task from the default
callback's output. Used by the reliability and security tests."""
import contextlib
import json
import os
import re
import subprocess
import sys
import time

from tests.support import harness
from tests.support.paths import COLLECTIONS_ROOT, REPO_ROOT, ensure_collection_link

PLAYBOOKS = os.path.join(REPO_ROOT, 'tests', 'integration', 'playbooks')
ROLE_PLAYBOOK = os.path.join(PLAYBOOKS, 'reliability_role.yml')
ROLE_PREFIX = 'linuxnet.netns.netns_nat : '

_TASK_RE = re.compile(r'^TASK \[(.*)\] \*+$')
_STATUS_RE = re.compile(r'^(ok|changed|skipping|fatal|failed): \[([^\]]+)\](.*)$')
_RECAP_RE = r'^%s\s*:\s*(.*)$'


def ansible_playbook_path():
    candidate = os.path.join(REPO_ROOT, '.venv', 'bin', 'ansible-playbook')
    if os.path.exists(candidate):
        return candidate
    return os.path.join(os.path.dirname(sys.executable), 'ansible-playbook')


def module_interpreter():
    return harness.MODULE_PYTHON or sys.executable


def write_inventory(path, hosts, common=None):
    """hosts: inventory name -> host vars (ansible_netns_name at least); common: vars of all."""
    group_vars = {'ansible_connection': 'linuxnet.netns.netns',
                  'ansible_python_interpreter': module_interpreter(),
                  'netns_nat_install_packages': False}
    group_vars.update(common or {})
    with open(str(path), 'w') as handle:
        json.dump({'all': {'hosts': hosts, 'vars': group_vars}}, handle)  # JSON is YAML
    return str(path)


def playbook_env(workdir, extra=None):
    ensure_collection_link()
    env = dict(harness.ENV)
    env.pop('ANSIBLE_CONFIG', None)  # isolated from the repository's ansible.cfg
    env.update(LC_ALL='C.UTF-8', ANSIBLE_COLLECTIONS_PATH=COLLECTIONS_ROOT, ANSIBLE_NOCOLOR='1',
               ANSIBLE_FORCE_COLOR='0', ANSIBLE_RETRY_FILES_ENABLED='0', ANSIBLE_CALLBACK_RESULT_FORMAT='json',
               ANSIBLE_LOCAL_TEMP=os.path.join(str(workdir), 'ansible-local'), ANSIBLE_FORKS='20')
    env.update(extra or {})
    return env


def playbook_argv(inventory, extra_vars_file=None, check=False, extra_vars=None, playbook=ROLE_PLAYBOOK):
    argv = [ansible_playbook_path(), '-i', str(inventory), playbook]
    if extra_vars_file:
        argv += ['-e', '@%s' % extra_vars_file]
    if extra_vars:
        argv += ['-e', json.dumps(extra_vars)]
    if check:
        argv.append('--check')
    return argv


def _result_from(text, following):
    """The JSON result after '=>': on the status line itself, or (debug prints it indented)
    continued on the following lines up to the closing brace at the line's start."""
    try:
        return json.loads(text)
    except ValueError:
        pass
    for end, line in enumerate(following):
        if line == '}':
            try:
                return json.loads('\n'.join([text] + following[:end + 1]))
            except ValueError:
                return None
    return None


class PlaybookRun(object):
    """The outcome of one ansible-playbook run, parsed from its default output."""

    def __init__(self, argv, returncode, stdout, stderr):
        self.argv = argv
        self.rc = returncode
        self.stdout = stdout
        self.stderr = stderr
        self.events = []  # (task, host, status, result dict or None)
        task = None
        lines = stdout.splitlines()
        for index, line in enumerate(lines):
            match = _TASK_RE.match(line)
            if match:
                task = match.group(1)
                if task.startswith(ROLE_PREFIX):
                    task = task[len(ROLE_PREFIX):]
                continue
            match = _STATUS_RE.match(line)
            if match and task is not None:
                status, host, rest = match.groups()
                result = None
                if '=> {' in rest:
                    result = _result_from(rest[rest.index('=> {') + 3:], lines[index + 1:])
                self.events.append((task, host, 'failed' if status == 'fatal' else status, result))

    @property
    def output(self):
        return 'argv: %s\nrc: %d\n%s\n%s' % (' '.join(self.argv), self.rc, self.stdout, self.stderr)

    def recap(self, host):
        match = re.search(_RECAP_RE % re.escape(host), self.stdout, re.MULTILINE)
        assert match, 'no recap line for %s in:\n%s' % (host, self.output)
        return dict((key, int(value)) for key, value in re.findall(r'(\w+)=(\d+)', match.group(1)))

    def changed_tasks(self, host):
        return [task for task, name, status, dummy in self.events if name == host and status == 'changed']

    def changed_parts(self, host):
        """The parts of the role's netns_topology call that changed something on ``host``
        (printed by the test playbook's 'Show what moved' task)."""
        for task, name, dummy, result in self.events:
            if task == 'Show what moved' and name == host and result is not None:
                return result['netns_nat_applied.changed_parts']
        raise AssertionError('no "Show what moved" result for %s in:\n%s' % (host, self.output))

    def failure(self, host):
        """The result of the task that failed for ``host`` (None if none did)."""
        for task, name, status, result in self.events:
            if name == host and status == 'failed':
                return dict(result or {}, _task=task)
        return None


def run_playbook(inventory, workdir, extra_vars_file=None, check=False, extra_vars=None, env=None, timeout=600,
                 playbook=ROLE_PLAYBOOK):
    argv = playbook_argv(inventory, extra_vars_file, check, extra_vars, playbook)
    proc = subprocess.run(argv, cwd=str(workdir), env=playbook_env(workdir, env), capture_output=True, text=True,
                          timeout=timeout, check=False)
    return PlaybookRun(argv, proc.returncode, proc.stdout, proc.stderr)


def start_playbook(inventory, workdir, extra_vars_file=None, env=None, stdout_path=None):
    """The same as run_playbook, started in the background: (Popen, argv); output goes
    to ``stdout_path`` so that two runs at once cannot block on full pipes."""
    argv = playbook_argv(inventory, extra_vars_file)
    handle = open(stdout_path, 'w')
    proc = subprocess.Popen(argv, cwd=str(workdir), env=playbook_env(workdir, env), stdout=handle,
                            stderr=subprocess.STDOUT, text=True)
    proc.output_handle = handle
    return proc, argv


def finish_playbook(proc, argv, stdout_path, timeout=600):
    proc.wait(timeout=timeout)
    proc.output_handle.close()
    with open(stdout_path) as handle:
        text = handle.read()
    return PlaybookRun(argv, proc.returncode, text, '')


def settled_snapshot(namespaces, timeout=10.0, interval=0.25):
    """snapshot_own once the kernel has finished what it does by itself after links come
    up (carrier, IPv6 link-local addresses): two reads in a row that agree."""
    previous = harness.snapshot_own(namespaces)
    deadline = time.time() + timeout
    while time.time() < deadline:
        time.sleep(interval)
        current = harness.snapshot_own(namespaces)
        if current == previous:
            return current
        previous = current
    return previous


def normalized(snapshot):
    """A snapshot without what the kernel picks anew when an object is recreated (a veth's
    MAC address and the IPv6 link-local address derived from it): what a repaired
    topology must match exactly is everything else."""
    result = {}
    for key, value in snapshot.items():
        if not isinstance(value, dict) or 'links' not in value:
            result[key] = value
            continue
        state = dict(value)
        state['links'] = dict((name, dict((k, v) for k, v in link.items() if k not in ('address', 'permaddr')))
                              for name, link in value['links'].items())
        state['addresses'] = dict((name, [a for a in addrs if not a.startswith('fe80:')])
                                  for name, addrs in value['addresses'].items())
        result[key] = state
    return result


def differences(after, before):
    """Readable differences between two snapshots: (namespace, part, before, after)."""
    found = []
    for name in sorted(set(after) | set(before)):
        old, new = before.get(name), after.get(name)
        if old == new:
            continue
        if not isinstance(old, dict) or not isinstance(new, dict):
            found.append((name, None, old, new))
            continue
        for part in sorted(set(old) | set(new)):
            if old.get(part) != new.get(part):
                if isinstance(old.get(part), dict) and isinstance(new.get(part), dict):
                    for key in sorted(set(old[part]) | set(new[part])):
                        if old[part].get(key) != new[part].get(key):
                            found.append((name, '%s/%s' % (part, key), old[part].get(key), new[part].get(key)))
                elif isinstance(old.get(part), list) and isinstance(new.get(part), list):
                    found.append((name, part, sorted(set(old[part]) - set(new[part])),
                                  sorted(set(new[part]) - set(old[part]))))
                else:
                    found.append((name, part, old.get(part), new.get(part)))
    return found


def assert_same(after, before):
    """after == before (two snapshots), or the failure lists what differs (before -> after)."""
    assert after == before, '\n'.join('%s %s:\n  before: %r\n  after:  %r' % item
                                      for item in differences(after, before))


class RoleLab(object):
    """host (the role's target, reached through the connection plugin) with an egress
    eth0 wired to outside's eth0 (the article's host1 and host2, 192.168.1.0/24),
    plus the inner namespaces the role makes; every name unique, all removed by close()."""

    HOST_ADDRESS = '192.168.1.32'
    OUTSIDE_ADDRESS = '192.168.1.15'

    def __init__(self, workdir, tag='r'):
        self.workdir = str(workdir)
        self.made = []
        self.host = self._namespace(tag + 'h')
        self.outside = self._namespace(tag + 'o')
        harness.sh(['ip', '-n', self.host, 'link', 'add', 'eth0', 'type', 'veth', 'peer', 'name', 'eth0',
                    'netns', self.outside])
        for ns, address in ((self.host, self.HOST_ADDRESS), (self.outside, self.OUTSIDE_ADDRESS)):
            harness.sh(['ip', '-n', ns, 'addr', 'add', address + '/24', 'dev', 'eth0'])
            harness.sh(['ip', '-n', ns, 'link', 'set', 'eth0', 'up'])
        self.inner = []
        self.inventory = write_inventory(os.path.join(self.workdir, 'inventory.json'),
                                         {'target': {'ansible_netns_name': self.host}})

    def _namespace(self, tag):
        return harness.add_netns(tag, self.made)

    def inner_name(self, tag):
        """A unique name for a namespace the role will create (removed by close())."""
        name = harness.unique_name(tag)
        self.inner.append(name)
        return name

    def write_vars(self, variables, name='vars.json'):
        path = os.path.join(self.workdir, name)
        with open(path, 'w') as handle:
            json.dump(variables, handle)
        return path

    def run(self, variables, check=False, state=None, env=None):
        extra = {'netns_nat_state': state} if state else None
        return run_playbook(self.inventory, self.workdir, self.write_vars(variables), check=check, extra_vars=extra,
                            env=env)

    def snapshot(self):
        return settled_snapshot([self.host, self.outside] + self.inner)

    def close(self):
        # The records are named after the host namespace's cookie: drop them with it.
        harness.remove_forwarding_record(self.host)
        for name in self.inner + self.made:
            harness.delete_netns(name)


@contextlib.contextmanager
def veth_joined_namespaces(tags=('v', 'p'), setup=None):
    """Two namespaces {V} and {P} joined by veth v0 (10.61.0.1/24) <-> p0 (10.61.0.2/24),
    both up; ``setup(v, p)`` adds more before the state is left to settle. Yields
    {'V': v, 'P': p} and always deletes both."""
    v, p = harness.unique_name(tags[0]), harness.unique_name(tags[1])
    try:
        for ns in (v, p):
            harness.sh(['ip', 'netns', 'add', ns])
            harness.sh(['ip', '-n', ns, 'link', 'set', 'lo', 'up'])
        harness.sh(['ip', '-n', v, 'link', 'add', 'v0', 'type', 'veth', 'peer', 'name', 'p0', 'netns', p])
        for ns, ifname, cidr in ((v, 'v0', '10.61.0.1/24'), (p, 'p0', '10.61.0.2/24')):
            harness.sh(['ip', '-n', ns, 'addr', 'add', cidr, 'dev', ifname])
            harness.sh(['ip', '-n', ns, 'link', 'set', ifname, 'up'])
        if setup is not None:
            setup(v, p)
        settled_snapshot([v, p])
        yield {'V': v, 'P': p}
    finally:
        harness.delete_netns(v)
        harness.delete_netns(p)
