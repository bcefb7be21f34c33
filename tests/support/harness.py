# SPDX-License-Identifier: GPL-3.0-or-later
"""Integration-test harness: run modules for real, make unique namespaces, and
snapshot kernel state so tests can prove that nothing moved."""
import itertools
import json
import os
import re
import subprocess
import tempfile
import time

from tests.support.paths import COLLECTION_LINK, ensure_collection_link

PREFIX = 'lnt%d' % (os.getpid() % 100000)
_counter = itertools.count()
ENV = dict(os.environ, LC_ALL='C')

# The Python that runs modules; CI sets it to the pyroute2 0.7.2 venv for a second pass.
MODULE_PYTHON = os.environ.get('LNT_MODULE_PYTHON') or None


def unique_name(tag='ns'):
    """A namespace/interface-safe unique name (<= 15 bytes)."""
    return ('%s%s%d' % (PREFIX, tag, next(_counter)))[:15]


def sh(argv, check=True, input=None):
    """Run argv (never a shell string) and return stdout."""
    proc = subprocess.run(argv, input=input, capture_output=True, text=True, env=ENV, check=False)
    if check and proc.returncode != 0:
        raise AssertionError('%s failed (%d): %s%s' % (argv, proc.returncode, proc.stdout, proc.stderr))
    return proc.stdout


def nsexec(ns, argv, check=True, input=None):
    return sh(['ip', 'netns', 'exec', ns] + list(argv), check=check, input=input)


def warning_texts(result):
    """The module's warnings as text: ansible-core 2.19 returns each as a structure whose
    event holds the message, earlier versions as a plain string."""
    texts = []
    for warning in result.get('warnings') or []:
        if isinstance(warning, dict):
            warning = (warning.get('event') or {}).get('msg', warning.get('msg', ''))
        texts.append(warning)
    return texts


def run_module(name, args=None, check=False, diff=False, python=None, netns=None):
    """Execute plugins/modules/NAME.py as Ansible would (JSON args file), return its result;
    with ``netns``, the module process runs inside that namespace (as through the
    linuxnet.netns.netns connection plugin), so its own namespace is that one."""
    import sys
    ensure_collection_link()
    module_args = dict(args or {})
    module_args['_ansible_check_mode'] = check
    module_args['_ansible_diff'] = diff
    module_args.setdefault('_ansible_tmpdir', tempfile.gettempdir())
    module_args.setdefault('_ansible_remote_tmp', tempfile.gettempdir())
    with tempfile.NamedTemporaryFile('w', suffix='.json', delete=False) as handle:
        json.dump({'ANSIBLE_MODULE_ARGS': module_args}, handle)
        args_path = handle.name
    try:
        env = dict(ENV)
        collections_root = os.path.dirname(os.path.dirname(os.path.dirname(COLLECTION_LINK)))
        env['PYTHONPATH'] = collections_root + os.pathsep + env.get('PYTHONPATH', '')
        interpreter = python or MODULE_PYTHON or sys.executable
        # nsenter, not `ip netns exec`: that one also makes a private mount namespace, and
        # namespaces the module creates would be mounted only in there.
        prefix = ['nsenter', '--net=/run/netns/%s' % netns] if netns else []
        proc = subprocess.run(
            prefix + [interpreter, '-m', 'ansible_collections.linuxnet.netns.plugins.modules.%s' % name, args_path],
            capture_output=True, text=True, env=env, check=False)
    finally:
        os.unlink(args_path)
    try:
        result = json.loads(proc.stdout)
    except ValueError:
        raise AssertionError('module %s printed no JSON (rc=%d):\nstdout: %s\nstderr: %s'
                             % (name, proc.returncode, proc.stdout, proc.stderr))
    result['_rc'] = proc.returncode
    return result


def list_netns():
    out = sh(['ip', '-j', 'netns', 'list'], check=False).strip()
    return sorted(entry['name'] for entry in json.loads(out or '[]'))


def delete_netns(name):
    sh(['ip', 'netns', 'delete', name], check=False)


def add_netns(tag, made):
    """A new uniquely named namespace with loopback up; its name is appended to ``made`` (the
    caller's list of what to delete) before it exists, so a failure half-way is cleaned up too."""
    name = unique_name(tag)
    made.append(name)
    sh(['ip', 'netns', 'add', name])
    sh(['ip', '-n', name, 'link', 'set', 'lo', 'up'])
    return name


def wire(ns, ifname, cidr, peer_ns, peer, peer_cidr):
    """A veth from ``ns`` (ifname, cidr) to ``peer_ns`` (peer, peer_cidr), both ends up."""
    sh(['ip', '-n', ns, 'link', 'add', ifname, 'type', 'veth', 'peer', 'name', peer, 'netns', peer_ns])
    for where, name, address in ((ns, ifname, cidr), (peer_ns, peer, peer_cidr)):
        sh(['ip', '-n', where, 'addr', 'add', address, 'dev', name])
        sh(['ip', '-n', where, 'link', 'set', name, 'up'])


def _ip_json(ns, args):
    argv = (['ip', '-n', ns] if ns else ['ip']) + ['-j'] + list(args)
    out = sh(argv, check=False).strip()
    return json.loads(out or '[]')


_VOLATILE_LINK_KEYS = ('stats', 'stats64', 'operstate', 'linkmode', 'group', 'txqlen', 'qdisc',
                       'link_netnsid', 'link_index', 'ifindex', 'link')


def links(ns=None):
    """Link name -> stable properties (no counters, no ifindex)."""
    result = {}
    for link in _ip_json(ns, ['link', 'show']):
        result[link['ifname']] = dict((k, v) for k, v in link.items() if k not in _VOLATILE_LINK_KEYS)
    return result


def addresses(ns=None):
    result = {}
    for link in _ip_json(ns, ['addr', 'show']):
        result[link['ifname']] = sorted('%s/%s' % (a['local'], a['prefixlen'])
                                        for a in link.get('addr_info', []))
    return result


def routes(ns=None):
    entries = []
    for family in ('-4', '-6'):
        argv = (['ip', '-n', ns] if ns else ['ip']) + [family, 'route', 'show', 'table', 'all']
        entries.extend(line.strip() for line in sh(argv, check=False).splitlines())
    # Kernel-managed IPv6 link-local and multicast routes come and go with link state.
    return sorted(e for e in entries if e and 'fe80::' not in e and not e.startswith('multicast')
                  and 'ff00::/8' not in e)


_FORWARDING_SCRIPT = ('import glob\n'
                      'paths = ["/proc/sys/net/ipv4/ip_forward"] + sorted(glob.glob("/proc/sys/net/ipv[46]/conf/*/forwarding"))\n'
                      'for path in paths:\n'
                      '    print(path[len("/proc/sys/"):], open(path).read().strip())\n')


def sysctls(ns=None):
    """Every forwarding sysctl: ip_forward and conf/*/forwarding of both families (all,
    default and each interface), since one ip_forward write sets all of IPv4's."""
    import sys
    argv = [sys.executable, '-c', _FORWARDING_SCRIPT]
    if ns:
        argv = ['nsenter', '--net=/run/netns/' + ns] + argv
    result = {}
    for line in sh(argv, check=False).splitlines():
        key, dummy, value = line.partition(' ')
        result[key] = value
    return result


_NFT_COUNTER = re.compile(r'counter packets \d+ bytes \d+')
_NFT_SET_START = re.compile(r'^\t(?:set|map) (\S+) \{')
_NFT_ELEMENT = re.compile(r'(?:[^,"]|"(?:[^"\\]|\\.)*")+')


def _sets_in_order(lines):
    """An nft listing with each table's set and map declarations sorted by name and their
    elements sorted: nft lists sets in the order they were created and elements in hash
    order, neither of which means anything (a set is looked up by key), so an edited table
    and a fresh one compare equal when they hold the same sets."""
    result, blocks, block = [], [], None
    for line in lines:
        if block is not None:
            block.append(line)
            if line == '\t}':
                blocks.append(_sorted_elements(block))
                block = None
            continue
        if _NFT_SET_START.match(line):
            block = [line]
            continue
        if blocks and line == '':
            continue  # the blank line after a set block
        if blocks:
            for name, body in sorted(blocks):
                result.extend(body + [''])
            blocks = []
        result.append(line)
    return result


def _sorted_elements(block):
    name = _NFT_SET_START.match(block[0]).group(1)
    head = [line for line in block[1:] if not line.strip().startswith('elements') and line.startswith('\t\t') and
            not line.startswith('\t\t\t')]
    text = ' '.join(line.strip() for line in block if line.strip().startswith('elements') or line.startswith('\t\t\t'))
    body = [block[0]] + head
    if text:
        inner = text.split('{', 1)[1].rsplit('}', 1)[0]
        elements = sorted(item.strip() for item in _NFT_ELEMENT.findall(inner) if item.strip())
        body.append('\t\telements = { %s }' % ', '.join(elements))
    return name, body + ['\t}']


def rulesets(ns=None):
    result = {}
    for tool in ('iptables-save', 'ip6tables-save'):
        argv = [tool]
        out = nsexec(ns, argv, check=False) if ns else sh(argv, check=False)
        result[tool] = [line for line in out.splitlines() if line and not line.startswith('#')]
        # Counters in chain headers ([0:0]) change with traffic, not with configuration.
        result[tool] = [line.split(' [')[0] if line.startswith(':') else line for line in result[tool]]
    argv = ['nft', 'list', 'ruleset']
    out = nsexec(ns, argv, check=False) if ns else sh(argv, check=False)
    # Packet/byte counters move with traffic, not with configuration.
    result['nft'] = _sets_in_order([_NFT_COUNTER.sub('counter', line) for line in out.splitlines()])
    return result


# Set by the kernel some time after a link comes up (carrier, IPv6 link-local address),
# never by our modules: a snapshot taken in that gap must still equal a later one.
_CARRIER_FLAGS = ('LOWER_UP', 'NO-CARRIER', 'M-DOWN')


def _configured_links(ns):
    result = links(ns)
    for link in result.values():
        link['flags'] = [flag for flag in link.get('flags', []) if flag not in _CARRIER_FLAGS]
    return result


def _configured_addresses(ns):
    return dict((name, [a for a in addrs if not a.startswith('fe80:')]) for name, addrs in addresses(ns).items())


def snapshot(ns=None):
    """Everything a module of ours could change in namespace ``ns`` (None: root)."""
    return {
        'links': _configured_links(ns),
        'addresses': _configured_addresses(ns),
        'routes': routes(ns),
        'sysctls': sysctls(ns),
        'rulesets': rulesets(ns),
    }


def snapshot_many(namespaces):
    state = {'_netns': list_netns()}
    for ns in namespaces:
        state[ns] = snapshot(ns) if ns in state['_netns'] else None
    return state


def snapshot_own(namespaces):
    """snapshot_many, but the namespace list holds only names this test run made
    (PREFIX), so that test runs going on at the same time do not disturb it."""
    state = snapshot_many(namespaces)
    state['_netns'] = [name for name in state['_netns'] if name.startswith(PREFIX)]
    return state


def python_in_namespace(ns, directory):
    """Path of an executable that runs the module interpreter inside namespace ``ns``
    (``ip netns exec``), for run_module(python=...): exercises a module's own-namespace
    mode (no ``namespace`` option) without touching the root namespace. If ``ns`` is
    missing, ``ip`` fails and nothing runs."""
    import sys
    path = os.path.join(str(directory), 'python-in-%s' % ns)
    with open(path, 'w') as handle:
        handle.write('#!/bin/sh\nexec ip netns exec %s %s "$@"\n' % (ns, MODULE_PYTHON or sys.executable))
    os.chmod(path, 0o755)
    return path


ROLE_RECORD_DIR = '/run/linuxnet-netns'


_COOKIE_SCRIPT = ('import socket, struct\n'
                  's = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)\n'
                  'print(struct.unpack("=Q", s.getsockopt(socket.SOL_SOCKET, 71, 8))[0])\n')


def namespace_cookie(ns):
    """The netns cookie of ``ns`` (SO_NETNS_COOKIE read by a process inside it)."""
    import sys
    return int(sh(['nsenter', '--net=/run/netns/' + ns, sys.executable, '-c', _COOKIE_SCRIPT]).strip())


def forwarding_record(ns, record_dir=ROLE_RECORD_DIR):
    """Where sysctl_forward (record_dir) keeps the values it replaced in ``ns``."""
    return os.path.join(record_dir, 'forwarding-cookie-%d.json' % namespace_cookie(ns))


def ownership_record(ns, record_dir=ROLE_RECORD_DIR):
    """Where netns_topology (ownership) records what it created on the host ``ns``."""
    return os.path.join(record_dir, 'owned-cookie-%d.json' % namespace_cookie(ns))


def recorded_off(ns, families=(4,)):
    """What sysctl_forward records for a namespace whose forwarding values were all 0 before
    a global write of these families: the global key and every conf/*/forwarding it overwrote."""
    record = {'net.ipv4.ip_forward': 0} if 4 in families else {}
    for key in sysctls(ns):
        if any(key.startswith('net/ipv%d/conf/' % family) for family in families):
            record[key.replace('/', '.')] = 0
    return record


def remove_forwarding_record(ns, record_dir=ROLE_RECORD_DIR):
    """Drop the records the role keeps for host ``ns`` (forwarding values and ownership),
    for a host namespace deleted without the role's state=absent; no-op if ``ns`` is gone."""
    if not os.path.exists('/run/netns/' + ns):
        return
    for path in (forwarding_record(ns, record_dir), ownership_record(ns, record_dir)):
        try:
            os.unlink(path)
        except OSError:
            pass


def wait_for(predicate, timeout, interval=0.05):
    """The first true value of ``predicate()`` within ``timeout`` seconds, else its last value."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    return predicate()


def legacy_restore_processes(namespace, lockfile=None):
    """PIDs of iptables-legacy-restore processes running in ``namespace`` (and, if given,
    with XTABLES_LOCKFILE=lockfile in their environment): our calls, blocked on the lock."""
    inode = os.stat('/run/netns/' + namespace).st_ino
    found = []
    for entry in os.listdir('/proc'):
        if not entry.isdigit():
            continue
        try:
            with open('/proc/%s/cmdline' % entry, 'rb') as handle:
                argv = handle.read().split(b'\0')
            if not os.path.basename(argv[0]).startswith(b'iptables-legacy-restore'):
                continue
            if os.stat('/proc/%s/ns/net' % entry).st_ino != inode:
                continue
            if lockfile is not None:
                with open('/proc/%s/environ' % entry, 'rb') as handle:
                    if ('XTABLES_LOCKFILE=%s' % lockfile).encode() not in handle.read().split(b'\0'):
                        continue
        except OSError:
            continue  # exited meanwhile
        found.append(int(entry))
    return found
