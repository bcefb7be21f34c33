# SPDX-License-Identifier: GPL-3.0-or-later
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The benchmark's topology: names, address plan, and the namespaces every variant
starts from (routers with an uplink into one upstream namespace).

Everything lives in namespaces whose names start with this process's prefix
(``lnb<pid>``); ``cleanup()`` removes all of them and is safe to call at any time,
several times, including from a signal handler's unwinding. Nothing here touches the
root namespace's network: every command is ``ip netns add``, ``ip -n NS ...`` or
``ip netns exec NS ...``.
"""

import os
import re
import subprocess
import time

ENV = dict(os.environ, LC_ALL='C')
NETNS_DIR = '/run/netns'
PREFIX = 'lnb%d' % os.getpid()
# A stale prefix from an earlier, killed bench: lnb<pid> with the pid gone.
STALE_PATTERN = re.compile(r'^lnb(\d+)[a-z]')

UPLINK = 'uplink'
INNER_PORT = 80
FIRST_PUBLISHED_PORT = 20000
MAX_INNER = 250 * 155  # 10.100.0.0 .. 10.254.249.0: far more than the bench needs


def sh(argv, check=True, input=None):
    proc = subprocess.run(argv, input=input, capture_output=True, text=True, env=ENV, check=False)
    if check and proc.returncode != 0:
        raise RuntimeError('%s failed (rc=%d): %s%s' % (
            ' '.join(argv), proc.returncode, proc.stdout, proc.stderr))
    return proc.stdout


def ip_batch(lines, namespace=None, check=True):
    """Many ip commands in one process (only for setting up and tearing down)."""
    if not lines:
        return
    argv = ['ip'] + (['-n', namespace] if namespace else []) + ['-force', '-batch', '-']
    sh(argv, check=check, input='\n'.join(lines) + '\n')


class Inner(object):
    """Inner namespace number ``index``: its names and addresses (same plan as shell_loop.sh)."""

    def __init__(self, index, router):
        if not 0 <= index < MAX_INNER:
            raise ValueError('inner index %d out of the address plan' % index)
        self.index = index
        self.router = router
        self.name = '%sn%d' % (PREFIX, index)
        net = '10.%d.%d' % (100 + index // 250, index % 250)
        self.subnet = net + '.0/24'
        self.gateway = net + '.1'
        self.address = net + '.2'
        self.host_if = 'vh%d' % index
        self.inner_if = 'vi%d' % index
        self.published_port = FIRST_PUBLISHED_PORT + index


class Router(object):
    """A router namespace: uplink 10.200.K.1/24 to the upstream namespace's dnK (10.200.K.2)."""

    def __init__(self, number, first_inner, count):
        self.number = number
        self.name = '%sr%d' % (PREFIX, number)
        self.uplink = UPLINK
        self.address = '10.200.%d.1' % number
        self.upstream_if = 'dn%d' % number
        self.upstream_address = '10.200.%d.2' % number
        self.inners = [Inner(i, self) for i in range(first_inner, first_inner + count)]


class Topology(object):
    """``routers`` routers with ``per_router`` inner namespaces each, one upstream."""

    def __init__(self, routers, per_router):
        self.upstream = PREFIX + 'u'
        self.routers = [Router(k, k * per_router, per_router) for k in range(routers)]

    @property
    def inners(self):
        return [inner for router in self.routers for inner in router.inners]

    def build_base(self):
        """Upstream and routers with their uplinks; FORWARD policy DROP in each router, so a
        variant that forgets its forward rules fails the probe instead of passing by luck."""
        names = [self.upstream] + [r.name for r in self.routers]
        ip_batch(['netns add %s' % name for name in names])
        for name in names:
            if not os.path.exists(os.path.join(NETNS_DIR, name)):
                raise RuntimeError('could not create namespace %s' % name)
        ip_batch(['link set lo up'], self.upstream)
        for router in self.routers:
            ip_batch([
                'link set lo up',
                'link add %s type veth peer name %s netns %s' % (router.uplink, router.upstream_if,
                                                                 self.upstream),
                'addr add %s/24 dev %s' % (router.address, router.uplink),
                'link set %s up' % router.uplink,
            ], router.name)
            ip_batch([
                'addr add %s/24 dev %s' % (router.upstream_address, router.upstream_if),
                'link set %s up' % router.upstream_if,
            ], self.upstream)
            sh(['ip', 'netns', 'exec', router.name, 'iptables', '-w', '-P', 'FORWARD', 'DROP'])

    def destroy(self):
        cleanup()


def our_namespaces(prefix=PREFIX):
    try:
        names = os.listdir(NETNS_DIR)
    except OSError:
        return []
    return sorted(name for name in names if name.startswith(prefix))


def _kill_processes_in(names):
    """Listeners a probe may have left behind would keep a namespace alive."""
    for name in names:
        out = sh(['ip', 'netns', 'pids', name], check=False)
        for pid in out.split():
            try:
                os.kill(int(pid), 9)
            except (OSError, ValueError):
                pass


def delete_namespaces(names):
    if not names:
        return
    _kill_processes_in(names)
    ip_batch(['netns delete %s' % name for name in names], check=False)
    for name in names:  # a placeholder file that was never mounted is left by ip -batch
        path = os.path.join(NETNS_DIR, name)
        if os.path.exists(path):
            sh(['ip', 'netns', 'delete', name], check=False)
            try:
                os.unlink(path)
            except OSError:
                pass


def cleanup(prefix=PREFIX, settle=True):
    """Remove every namespace of this bench. Deleting hundreds of namespaces leaves work
    queued in the kernel; a short pause keeps it out of the next timed run."""
    names = our_namespaces(prefix)
    delete_namespaces(names)
    if settle and len(names) > 50:
        time.sleep(min(5.0, len(names) / 100.0))
    return names


def stale_prefixes():
    """Prefixes of earlier benches whose process is gone."""
    prefixes = set()
    for name in our_namespaces('lnb'):
        match = STALE_PATTERN.match(name)
        if match and not os.path.exists('/proc/%s' % match.group(1)):
            prefixes.add('lnb' + match.group(1))
    return sorted(prefixes)
