# SPDX-License-Identifier: GPL-3.0-or-later
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Benchmark of linuxnet.netns (issue 5): the netns_nat role against a shell loop of the
reference article's commands, against an expert's batch script and against a playbook of
ansible-core's own modules; and (issue 14) the data plane of the DNAT rule shapes.

    make bench                               # N = 10, 100, 500; 3 runs; all variants; fleet
    .venv/bin/python bench/run.py --quick    # N = 10, 100; 3 runs; for development
    .venv/bin/python bench/run.py --variants expert,role --sizes 100,500
    .venv/bin/python bench/run.py --dataplane   # connections/s through 10, 500, 2000 DNATs

Everything happens in network namespaces this process makes, and it runs in a private
mount namespace with its own /run/netns: the lab is invisible to other users of the
machine, and even a `kill -9` of the bench frees every lab namespace (the kernel drops a
network namespace when its last process and its last mount are gone). The root
namespace's network is never changed; a snapshot before and after proves it.
See bench/README.md for what each variant does and what is measured.
"""

import argparse
import json
import os
import re
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.dirname(BENCH_DIR)
sys.path.insert(0, BENCH_DIR)
sys.path.insert(0, REPO_ROOT)

import dataplane  # noqa: E402  (bench/dataplane.py, next to this file)
import lab  # noqa: E402  (bench/lab.py, next to this file)
from module_python import SAMPLE_SECONDS as MEMORY_SAMPLE_SECONDS  # noqa: E402

VENV_BIN = os.path.join(REPO_ROOT, '.venv', 'bin')
ANSIBLE_PLAYBOOK = os.path.join(VENV_BIN, 'ansible-playbook')
DEFAULT_MODULE_PYTHON = os.path.join(VENV_BIN, 'python')
COLLECTIONS_ROOT = os.path.join(REPO_ROOT, '.build', 'collections')
RESULTS_DIR = os.path.join(BENCH_DIR, 'results')
ISOLATION_MARK = 'LNB_ISOLATED'
PLAYBOOK_TIMEOUT = 3600
RECAP_LINE = re.compile(r'^(\S+)\s*:\s*ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)'
                        r'\s+skipped=(\d+)\s+rescued=(\d+)\s+ignored=(\d+)')
ROLE_TASK_PREFIX = 'linuxnet.netns.netns_nat : '
OUR_MODULES = ('netns', 'veth', 'netns_route', 'sysctl_forward', 'nat_rule', 'netns_topology', 'conntrack_info',
               'netns_probe')
PHASES = ('converge', 'rerun', 'teardown')
FLEET_SHAPES = (('20 hosts x 5', 20, 5), ('1 host x 100', 1, 100))
VARIANTS = ('role', 'shell', 'expert', 'builtin', 'memory', 'fleet', 'dataplane')
DEFAULT_VARIANTS = 'role,shell,expert,builtin,memory,fleet'
EXPERT_SCRIPT = os.path.join(BENCH_DIR, 'expert_batch.sh')
EXPERT_RESULT = re.compile(r'^expert_batch: changed=(\d+) \((.*)\)$', re.M)


class BenchFailure(Exception):
    """The bench measured something that is wrong (not merely slow)."""


# --- isolation ---------------------------------------------------------------------------

def isolate():
    """Re-run this script in a private mount namespace with a fresh /run/netns."""
    if os.environ.get(ISOLATION_MARK) == str(os.getpid()):
        lab.sh(['mount', '-t', 'tmpfs', '-o', 'mode=0755,size=16m', 'lnb-netns', lab.NETNS_DIR])
        # Shared, as `ip netns add` makes it: a namespace created by a module inside a host
        # of the connection plugin (a child mount namespace) must show up here.
        lab.sh(['mount', '--make-shared', lab.NETNS_DIR])
        return
    if os.geteuid() != 0:
        sys.exit('bench/run.py needs root (it creates network namespaces)')
    os.makedirs(lab.NETNS_DIR, exist_ok=True)
    env = dict(os.environ)
    env[ISOLATION_MARK] = str(os.getpid())  # unshare execs in place: same pid
    os.execvpe('unshare', ['unshare', '--mount', '--propagation', 'private', '--',
                           sys.executable, os.path.abspath(__file__)] + sys.argv[1:], env)


def root_snapshot():
    from tests.support import harness
    return harness.snapshot(None)


# --- running things ----------------------------------------------------------------------

class Workspace(object):
    """Temporary files of one bench run (inventories, logs, role state dirs)."""

    def __init__(self):
        self.path = tempfile.mkdtemp(prefix='%s-' % lab.PREFIX)
        self._counter = 0

    def file(self, stem, suffix):
        self._counter += 1
        return os.path.join(self.path, '%s-%03d%s' % (stem, self._counter, suffix))

    def remove(self):
        shutil.rmtree(self.path, ignore_errors=True)


class Timed(object):
    """Wall time, CPU time (user + system of the whole process tree), machine load, and the
    share of the machine's CPU time the hypervisor gave to other guests meanwhile (steal)."""

    def __init__(self, wall, cpu, load, steal=0.0):
        self.wall = wall
        self.cpu = cpu
        self.load = load
        self.steal = steal


def children_cpu():
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def steal_ticks():
    """(steal, all) clock ticks of every CPU so far, from /proc/stat (0, 0 where unknown)."""
    try:
        with open('/proc/stat') as handle:
            fields = [int(x) for x in handle.readline().split()[1:]]
    except (OSError, ValueError):
        return 0, 0
    # user nice system idle iowait irq softirq steal guest guest_nice; guests are in user/nice
    return (fields[7] if len(fields) > 7 else 0), sum(fields[:8])


def steal_share(before, after):
    total = after[1] - before[1]
    return (after[0] - before[0]) / float(total) if total > 0 else 0.0


def run_process(argv, env=None, timeout=PLAYBOOK_TIMEOUT, input=None):
    """Run argv in its own process group (so Ctrl-C or a failure can stop all of it);
    return (Timed, returncode, stdout, stderr). CPU time counts every descendant that was
    waited for, which is all of them for ansible-playbook and for the shell loop."""
    load = os.getloadavg()[0]
    cpu_before = children_cpu()
    steal_before = steal_ticks()
    started = time.monotonic()
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env, start_new_session=True)
    try:
        out, err = proc.communicate(input=input, timeout=timeout)
    except BaseException:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except OSError:
            pass
        proc.wait()
        raise
    wall = time.monotonic() - started
    timed = Timed(wall, children_cpu() - cpu_before, load, steal_share(steal_before, steal_ticks()))
    return timed, proc.returncode, out, err


def ansible_env(task_log, forks, pipelining):
    env = dict(os.environ)
    env.update({
        'ANSIBLE_CONFIG': os.path.join(REPO_ROOT, 'ansible.cfg'),
        'ANSIBLE_COLLECTIONS_PATH': COLLECTIONS_ROOT,
        'ANSIBLE_CALLBACK_PLUGINS': os.path.join(BENCH_DIR, 'callback_plugins'),
        'ANSIBLE_CALLBACKS_ENABLED': 'bench_timer',
        'ANSIBLE_FORKS': str(forks),
        'ANSIBLE_NOCOLOR': '1',
        'ANSIBLE_RETRY_FILES_ENABLED': '0',
        'LNB_TASK_LOG': task_log,
        'LC_ALL': 'C.UTF-8',
        'PATH': VENV_BIN + os.pathsep + env.get('PATH', ''),
    })
    if pipelining:
        env['ANSIBLE_PIPELINING'] = '1'
    return env


def parse_recap(stdout):
    """{host: {'ok': .., 'changed': .., 'unreachable': .., 'failed': ..}} from PLAY RECAP."""
    recap = {}
    in_recap = False
    for line in stdout.splitlines():
        if line.startswith('PLAY RECAP'):
            in_recap = True
            continue
        if in_recap:
            match = RECAP_LINE.match(line.strip())
            if match:
                recap[match.group(1)] = dict(zip(
                    ('ok', 'changed', 'unreachable', 'failed', 'skipped', 'rescued', 'ignored'),
                    (int(x) for x in match.groups()[1:])))
    return recap


class PlaybookRun(object):
    def __init__(self, timed, recap, tasks):
        self.timed = timed
        self.recap = recap
        self.tasks = tasks

    @property
    def changed(self):
        return sum(host['changed'] for host in self.recap.values())

    def changed_tasks(self):
        return ['%s (%s): %s' % (t['task'], t['host'], '; '.join(t.get('commands', [])[:8]))
                for t in self.tasks if t['changed']]


def run_playbook(ws, options, playbook, inventory, extra_vars=None, forks=10):
    task_log = ws.file('tasks', '.jsonl')
    argv = [ANSIBLE_PLAYBOOK, '-i', inventory, os.path.join(BENCH_DIR, 'playbooks', playbook)]
    if extra_vars:
        argv += ['-e', json.dumps(extra_vars)]
    timed, rc, out, err = run_process(argv, env=ansible_env(task_log, forks, options.pipelining))
    recap = parse_recap(out)
    tasks = []
    if os.path.exists(task_log):
        with open(task_log) as handle:
            tasks = [json.loads(line) for line in handle if line.strip()]
    if rc != 0 or not recap or any(h['failed'] or h['unreachable'] for h in recap.values()):
        raise BenchFailure('%s failed (rc=%d)\n--- stdout (tail)\n%s\n--- stderr (tail)\n%s' % (
            playbook, rc, '\n'.join(out.splitlines()[-60:]), '\n'.join(err.splitlines()[-30:])))
    return PlaybookRun(timed, recap, tasks)


def wait_for_quiet_machine(options, say):
    """With --max-load, start a timed step only when the 1-minute load average allows."""
    if not options.max_load:
        return
    deadline = time.monotonic() + options.load_wait
    waited = False
    while os.getloadavg()[0] > options.max_load and time.monotonic() < deadline:
        if not waited:
            say('waiting for the load average (%.2f) to drop below %.2f' % (
                os.getloadavg()[0], options.max_load))
            waited = True
        time.sleep(5)


# --- inventories --------------------------------------------------------------------------

def inner_facts(inner):
    """What the builtin playbook needs about one inner namespace."""
    return {
        'name': inner.name, 'host_if': inner.host_if, 'inner_if': inner.inner_if,
        'subnet': inner.subnet, 'gateway': inner.gateway, 'address': inner.address,
        'published_port': inner.published_port, 'inner_port': lab.INNER_PORT,
    }


def role_namespace(inner):
    """One entry of netns_nat_namespaces: the same topology as shell_loop.sh."""
    return {
        'name': inner.name,
        'host_interface': inner.host_if,
        'host_address': inner.gateway + '/24',
        'inner_interface': inner.inner_if,
        'inner_address': inner.address + '/24',
        'default_route': True,
        'source_nat': 'masquerade',
        'port_forwards': [{
            'protocol': 'tcp',
            'published_port': inner.published_port,
            'target_port': lab.INNER_PORT,
            'published_address': inner.router.address,
        }],
    }


def write_inventory(ws, topology, python, backend, variant='role'):
    """The inventory of one variant: each carries only its own variables, as an operator's
    inventory would (Ansible reads and converts every host variable at start)."""
    hosts = {}
    for router in topology.routers:
        host = {
            'ansible_connection': 'linuxnet.netns.netns',
            'ansible_python_interpreter': python,
        }
        if variant == 'builtin':
            host.update({
                'bench_uplink': router.uplink,
                'bench_router_address': router.address,
                'bench_inner': [inner_facts(inner) for inner in router.inners],
            })
        else:
            host.update({
                'netns_nat_install_packages': False,
                'netns_nat_egress_interface': router.uplink,
                'netns_nat_backend': backend,
                'netns_nat_forward_mode': 'scoped',
                # Hosts of the connection plugin share the controller's filesystem.
                'netns_nat_state_dir': os.path.join(ws.path, 'state', router.name),
                'netns_nat_namespaces': [role_namespace(inner) for inner in router.inners],
            })
        hosts[router.name] = host
    path = ws.file('inventory', '.json')
    with open(path, 'w') as handle:
        json.dump({'all': {'children': {'bench_routers': {'hosts': hosts}}}}, handle)
    return path


def wrapper_python(ws, real_python, profile_dir=None):
    """An executable that Ansible takes for the module interpreter (see module_python.py)."""
    log = ws.file('rss', '.jsonl')
    path = ws.file('module-python', '.sh')
    argv = [sys.executable, os.path.join(BENCH_DIR, 'module_python.py'), '--real', real_python,
            '--log', log]
    if profile_dir:
        argv += ['--profile-dir', profile_dir]
    with open(path, 'w') as handle:
        handle.write('#!/bin/sh\nexec %s -- "$@"\n' % ' '.join("'%s'" % a for a in argv))
    os.chmod(path, 0o755)
    return path, log


# --- correctness -------------------------------------------------------------------------

def sample(inners, spread=5):
    """First, last and ``spread`` more spread evenly across the range."""
    if len(inners) <= spread + 2:
        return list(inners)
    step = (len(inners) - 1) / float(spread + 1)
    picks = {0, len(inners) - 1}
    picks.update(int(round(step * k)) for k in range(1, spread + 1))
    return [inners[i] for i in sorted(picks)]


def probe(topology, what):
    checks = [{
        'inner': inner.name,
        'inner_port': lab.INNER_PORT,
        'published_port': inner.published_port,
        'router_address': inner.router.address,
        'upstream_address': inner.router.upstream_address,
    } for inner in sample(topology.inners)]
    spec = json.dumps({'upstream': topology.upstream, 'checks': checks})
    dummy_timed, rc, out, err = run_process(
        [sys.executable, os.path.join(BENCH_DIR, 'probe.py')], input=spec, timeout=300)
    try:
        result = json.loads(out)
    except ValueError:
        raise BenchFailure('probe after %s printed no result: %s %s' % (what, out, err))
    if rc != 0 or not result['ok']:
        bad = [c for c in result['checks'] if not c['ok']]
        raise BenchFailure('probe after %s: %d of %d sampled namespaces do not work: %s' % (
            what, len(bad), len(result['checks']), json.dumps(bad, indent=1)))
    return len(checks)


def router_state(router):
    """What the role may touch in a router: links, rules, forwarding."""
    links = sorted(link['ifname'] for link in json.loads(
        lab.sh(['ip', '-n', router.name, '-j', 'link', 'show']) or '[]'))
    rules = [line.split(' [')[0] for line in lab.sh(
        ['ip', 'netns', 'exec', router.name, 'iptables-save']).splitlines()
        if line and not line.startswith('#')]
    nft = lab.sh(['ip', 'netns', 'exec', router.name, 'nft', 'list', 'ruleset'], check=False)
    forward = lab.sh(['ip', 'netns', 'exec', router.name, 'cat', '/proc/sys/net/ipv4/ip_forward']).strip()
    return {'links': links, 'iptables': rules, 'nft': nft.splitlines(), 'ip_forward': forward}


def check_teardown(topology, baselines):
    """state: absent must remove everything the role made, and nothing else."""
    left = [inner.name for inner in topology.inners
            if os.path.exists(os.path.join(lab.NETNS_DIR, inner.name))]
    problems = []
    if left:
        problems.append('inner namespaces left after state=absent: %s' % ', '.join(left[:10]))
    for router in topology.routers:
        now = router_state(router)
        for key, before in baselines[router.name].items():
            if now[key] != before:
                problems.append('%s: %s differs after state=absent:\n before=%s\n after=%s' % (
                    router.name, key, before, now[key]))
    if problems:
        raise BenchFailure('\n'.join(problems[:6]))


def expert_fingerprint(topology):
    """What a re-run that reports changed=0 must leave exactly as it was: each inner namespace
    (the inode of its nsfs file changes when it is made again), the router's links with their
    ifindex (a veth pair made again gets new ones) and its rules in order."""
    router = topology.routers[0]
    namespaces = dict((inner.name, os.stat(os.path.join(lab.NETNS_DIR, inner.name)).st_ino)
                      for inner in topology.inners)
    links = sorted((link['ifindex'], link['ifname']) for link in json.loads(
        lab.sh(['ip', '-n', router.name, '-j', 'link', 'show']) or '[]'))
    return {'namespaces': namespaces, 'links': links, 'rules': router_state(router)['iptables']}


def fingerprint_difference(before, after):
    for key in before:
        if before[key] != after[key]:
            if isinstance(before[key], dict):
                changed = sorted(k for k in before[key] if before[key][k] != after[key].get(k))
                return '%s: %s' % (key, ', '.join(changed[:10]))
            return key
    return None


# --- variants ------------------------------------------------------------------------------

class Bench(object):
    def __init__(self, options):
        self.options = options
        self.ws = Workspace()
        # samples[variant][n][metric] -> list of values; metric 'build', 'converge', ...
        # for wall seconds and the same name + '_cpu' for CPU seconds
        self.samples = {}
        self.loads = []
        self.steals = []
        self.tasks = {}      # (n, phase) -> [task list per run] (role only)
        self.rss = {}        # n -> {module: peak kB}: the larger of the two below
        self.maxrss = {}     # n -> {module: kB}: wait4 ru_maxrss (the process and the children it waited for)
        self.hwm = {}        # n -> {module: kB}: VmHWM of the module's python alone, sampled while it ran
        self.module_calls = {}
        self.dataplane = {}  # (shape, published ports) -> [client result per run]

    def say(self, text):
        print('[%s] %s' % (time.strftime('%H:%M:%S'), text), flush=True)

    def add(self, variant, n, metric, timed):
        entry = self.samples.setdefault(variant, {}).setdefault(n, {})
        entry.setdefault(metric, []).append(timed.wall)
        entry.setdefault(metric + '_cpu', []).append(timed.cpu)
        self.loads.append(timed.load)
        self.steals.append(timed.steal)

    def fresh(self, routers, per_router):
        lab.cleanup()
        topology = lab.Topology(routers, per_router)
        topology.build_base()
        wait_for_quiet_machine(self.options, self.say)
        return topology

    def playbook(self, playbook, inventory, extra_vars=None, forks=10):
        return run_playbook(self.ws, self.options, playbook, inventory, extra_vars, forks)

    # 2. shell loop
    def shell(self, n):
        topology = self.fresh(1, n)
        router = topology.routers[0]
        timed, rc, out, err = run_process(
            ['bash', os.path.join(BENCH_DIR, 'shell_loop.sh'), router.name, router.uplink,
             router.address, lab.PREFIX + 'n', '0', str(n)])
        if rc != 0:
            raise BenchFailure('shell_loop.sh failed (rc=%d): %s%s' % (rc, out, err[-2000:]))
        probe(topology, 'shell loop N=%d' % n)
        self.add('shell', n, 'build', timed)
        self.say('shell   N=%-4d build %7.2fs (cpu %.2fs, load %.1f)' % (n, timed.wall, timed.cpu, timed.load))
        lab.cleanup()

    # 6. the expert's batch script: converge, re-run (must do nothing), teardown
    def run_expert(self, state, router, n, state_dir, what):
        timed, rc, out, err = run_process(
            ['bash', EXPERT_SCRIPT, state, router.name, router.uplink, router.address, lab.PREFIX + 'n', '0',
             str(n), state_dir])
        match = EXPERT_RESULT.search(out)
        if rc != 0 or not match:
            raise BenchFailure('expert_batch.sh %s failed (rc=%d): %s%s' % (what, rc, out[-2000:], err[-2000:]))
        return timed, int(match.group(1)), match.group(2)

    def expert(self, n):
        topology = self.fresh(1, n)
        router = topology.routers[0]
        label = 'expert N=%d' % n
        state_dir = tempfile.mkdtemp(prefix='expert-', dir=self.ws.path)
        try:
            baselines = {router.name: router_state(router)}
            converge, changed, detail = self.run_expert('present', router, n, state_dir, 'converge')
            if changed == 0:
                raise BenchFailure('%s: the converge reported changed=0 on an empty router' % label)
            probe(topology, '%s converge' % label)
            wait_for_quiet_machine(self.options, self.say)
            before = expert_fingerprint(topology)
            rerun, changed, detail = self.run_expert('present', router, n, state_dir, 're-run')
            if changed != 0:
                raise BenchFailure('%s: the re-run reported changed=%d (must be 0): %s' % (label, changed, detail))
            difference = fingerprint_difference(before, expert_fingerprint(topology))
            if difference:
                raise BenchFailure('%s: the re-run reported changed=0 but made %s again' % (label, difference))
            probe(topology, '%s re-run' % label)
            wait_for_quiet_machine(self.options, self.say)
            teardown, changed, detail = self.run_expert('absent', router, n, state_dir, 'teardown')
            check_teardown(topology, baselines)
        finally:
            lab.cleanup()
        for phase, timed in (('converge', converge), ('rerun', rerun), ('teardown', teardown)):
            self.add('expert', n, phase, timed)
        self.say('expert  N=%-4d converge %6.2fs  re-run %6.2fs (changed=0)  teardown %6.2fs'
                 '  (cpu %.2f/%.2f/%.2fs, load %.1f)' % (
                     n, converge.wall, rerun.wall, teardown.wall, converge.cpu, rerun.cpu, teardown.cpu,
                     converge.load))

    # 3. builtin playbook
    def builtin(self, n):
        topology = self.fresh(1, n)
        inventory = write_inventory(self.ws, topology, self.options.module_python, self.options.backend,
                                    variant='builtin')
        run = self.playbook('builtin.yml', inventory)
        probe(topology, 'builtin playbook N=%d' % n)
        self.add('builtin', n, 'build', run.timed)
        self.say('builtin N=%-4d build %7.2fs (cpu %.2fs, load %.1f)' % (
            n, run.timed.wall, run.timed.cpu, run.timed.load))
        lab.cleanup()

    # 1. the role (4. measures its memory, profile() its code, with another interpreter)
    def role_cycle(self, topology, python, label, forks=10):
        """Converge, idempotent re-run, teardown; each checked. Returns {phase: PlaybookRun}."""
        baselines = dict((router.name, router_state(router)) for router in topology.routers)
        inventory = write_inventory(self.ws, topology, python, self.options.backend)
        present, absent = {'netns_nat_state': 'present'}, {'netns_nat_state': 'absent'}
        converge = self.playbook('role.yml', inventory, present, forks)
        probe(topology, '%s converge' % label)
        wait_for_quiet_machine(self.options, self.say)
        rerun = self.playbook('role.yml', inventory, present, forks)
        if rerun.changed != 0:
            raise BenchFailure('%s: the idempotent re-run reported changed=%d (must be 0):\n%s' % (
                label, rerun.changed, '\n'.join(rerun.changed_tasks()[:10])))
        probe(topology, '%s re-run' % label)
        wait_for_quiet_machine(self.options, self.say)
        teardown = self.playbook('role.yml', inventory, absent, forks)
        check_teardown(topology, baselines)
        return {'converge': converge, 'rerun': rerun, 'teardown': teardown}

    def role(self, n):
        topology = self.fresh(1, n)
        phases = self.role_cycle(topology, self.options.module_python, 'role N=%d' % n)
        for phase, run in phases.items():
            self.add('role', n, phase, run.timed)
            self.tasks.setdefault((n, phase), []).append(run.tasks)
        self.say('role    N=%-4d converge %6.2fs  re-run %6.2fs (changed=0)  teardown %6.2fs'
                 '  (cpu %.1f/%.1f/%.1fs, load %.1f)' % (
                     n, phases['converge'].timed.wall, phases['rerun'].timed.wall,
                     phases['teardown'].timed.wall, phases['converge'].timed.cpu,
                     phases['rerun'].timed.cpu, phases['teardown'].timed.cpu,
                     phases['converge'].timed.load))
        lab.cleanup()

    def memory(self, n):
        topology = self.fresh(1, n)
        python, log = wrapper_python(self.ws, self.options.module_python)
        self.role_cycle(topology, python, 'memory N=%d' % n)
        maxrss, hwm, calls = {}, {}, {}
        with open(log) as handle:
            for line in handle:
                entry = json.loads(line)
                module = entry['module']
                maxrss[module] = max(maxrss.get(module, 0), entry['maxrss_kb'])
                hwm[module] = max(hwm.get(module, 0), entry.get('vmhwm_kb') or 0)
                calls[module] = calls.get(module, 0) + 1
        # The kernel updates a process's high-water mark lazily: a reading of VmHWM while it
        # runs can be a little above the ru_maxrss it leaves at exit. The peak is the larger.
        self.rss[n] = dict((m, max(kb, hwm.get(m, 0))) for m, kb in maxrss.items())
        self.maxrss[n] = maxrss
        self.hwm[n] = hwm
        self.module_calls[n] = calls
        ours = dict((m, kb) for m, kb in self.rss[n].items() if m in OUR_MODULES)
        top = max(ours.items(), key=lambda item: item[1]) if ours else ('-', 0)
        self.say('memory  N=%-4d peak module RSS %.1f MB (%s: wait4 ru_maxrss %.1f MB, its python alone,'
                 ' sampled VmHWM, %.1f MB); module calls per cycle: %s' % (
                     n, top[1] / 1024.0, top[0], maxrss.get(top[0], 0) / 1024.0, hwm.get(top[0], 0) / 1024.0,
                     ', '.join('%s=%d' % kv for kv in sorted(calls.items()))))
        lab.cleanup()

    def fleet(self):
        for label, routers, per_router in FLEET_SHAPES:
            topology = self.fresh(routers, per_router)
            phases = self.role_cycle(topology, self.options.module_python, label,
                                     forks=self.options.fleet_forks)
            for phase, run in phases.items():
                self.add('fleet', label, phase, run.timed)
            self.say('fleet   %-13s converge %6.2fs  re-run %6.2fs  teardown %6.2fs' % (
                label, phases['converge'].timed.wall, phases['rerun'].timed.wall,
                phases['teardown'].timed.wall))
            lab.cleanup()

    # 7. the data plane of the DNAT rule shapes (no role involved)
    def dataplane_point(self, shape, ports):
        load, steal_before = os.getloadavg()[0], steal_ticks()
        result = dataplane.measure_point(lab, shape, ports, self.options.dataplane_seconds,
                                         self.options.dataplane_limit, self.options.dataplane_warmup)
        self.loads.append(load)
        self.steals.append(steal_share(steal_before, steal_ticks()))
        if not result['ok']:
            raise BenchFailure('dataplane %s with %d ports: %s' % (shape, ports, result['error']))
        self.dataplane.setdefault((shape, ports), []).append(result)
        self.say('dataplane %-9s ports=%-5d rules=%-5d %8.0f conn/s  connect median %6.1f us  p90 %6.1f us'
                 '  (%d connections, %d slow, load %.1f)' % (
                     shape, ports, result['rules'], result['rate'], result['connect_median_us'],
                     result['connect_p90_us'], result['connections'], result['slow'], load))

    def dataplane_rounds(self):
        lab.cleanup()
        for dummy_run in range(self.options.dataplane_runs):
            # Interleaved, so that a slower minute of the machine hits every shape.
            for ports in self.options.dataplane_ports:
                for shape in dataplane.SHAPES:
                    self.dataplane_point(shape, ports)

    def profile(self, n):
        """cProfile every module process of one role cycle; write where the time goes."""
        topology = self.fresh(1, n)
        profile_dir = os.path.join(self.ws.path, 'profile')
        python, log = wrapper_python(self.ws, self.options.module_python, profile_dir)
        phases = self.role_cycle(topology, python, 'profile N=%d' % n)
        lab.cleanup()
        text = profile_report(n, profile_dir, log, phases)
        os.makedirs(RESULTS_DIR, exist_ok=True)
        path = os.path.join(RESULTS_DIR, 'profile-N%d.txt' % n)
        with open(path, 'w') as handle:
            handle.write(text)
        print(text)
        self.say('profile written to %s' % path)

    def close(self):
        self.ws.remove()


def short_path(path):
    for marker in ('ansible_collections/', 'site-packages/', 'lib/python3'):
        if marker in path:
            return path[path.index(marker):]
    return path


def profile_report(n, profile_dir, rss_log, phases):
    import pstats
    lines = ['# Profile of the module processes of one role cycle at N=%d' % n, '']
    for phase in PHASES:
        lines.append('%s: %.2f s wall; tasks: %s' % (phase, phases[phase].timed.wall, '; '.join(
            '%s %.2f' % (t['task'].replace(ROLE_TASK_PREFIX, ''), t['seconds'])
            for t in phases[phase].tasks if t['status'] != 'skipped')))
    with open(rss_log) as handle:
        runs = [json.loads(line) for line in handle]
    lines += ['', 'module processes in order (wall seconds under cProfile, peak RSS):']
    lines += ['  %-16s %6.2fs %6.1f MB' % (r['module'], r['seconds'], r['maxrss_kb'] / 1024.0) for r in runs]
    for name in sorted(os.listdir(profile_dir), key=lambda f: os.path.getmtime(os.path.join(profile_dir, f))):
        stats = pstats.Stats(os.path.join(profile_dir, name))
        rows = []
        for (path, line, func), (dummy_primitive, ncalls, own, cumulative, dummy_callers) in stats.stats.items():
            rows.append((cumulative, own, ncalls, '%s:%d(%s)' % (short_path(path), line, func)))
        lines += ['', '## %s: %.3f s profiled' % (name, stats.total_tt),
                  '', 'by cumulative time:', 'cumulative      own    calls  function']
        lines += ['%9.3fs %8.3fs %8d  %s' % row for row in sorted(rows, reverse=True)[:25]]
        lines += ['', 'by own time:']
        lines += ['%9.3fs %8.3fs %8d  %s' % row for row in sorted(rows, key=lambda r: r[1], reverse=True)[:12]]
    return '\n'.join(lines) + '\n'


# --- report ------------------------------------------------------------------------------

def median(values):
    return statistics.median(values) if values else None


def fmt_s(value):
    return '-' if value is None else '%.2f s' % value


def fmt_ratio(value):
    return '-' if value is None else '%.2fx' % value


def ratio(a, b):
    return a / b if a is not None and b else None


def figures(samples, suffix=''):
    """Medians per N: converge, rerun, teardown (role), shell, builtin; suffix '_cpu' for CPU."""
    sizes = set()
    for variant in ('role', 'shell', 'builtin', 'expert'):
        sizes.update(samples.get(variant, {}).keys())
    out = {}
    for n in sorted(sizes):
        role = samples.get('role', {}).get(n, {})
        expert = samples.get('expert', {}).get(n, {})
        row = dict((phase, median(role.get(phase + suffix, []))) for phase in PHASES)
        row.update(('expert_' + phase, median(expert.get(phase + suffix, []))) for phase in PHASES)
        row['shell'] = median(samples.get('shell', {}).get(n, {}).get('build' + suffix, []))
        row['builtin'] = median(samples.get('builtin', {}).get(n, {}).get('build' + suffix, []))
        out[n] = row
    return out


def peak_rss_mb(rss, n):
    ours = [kb for module, kb in rss.get(n, {}).items() if module in OUR_MODULES]
    return max(ours) / 1024.0 if ours else None


def target_checks(fig, rss):
    """{issue: [(target, measured text, met: True/False/None)]} for the targets of issue 5
    (against the shell loop and the builtin playbook) and of issue 14 (against the expert
    script, N=2000, memory). Only a functional failure makes a run fail; a missed target is
    reported, not raised."""
    checks = {5: [], 14: []}

    def check(issue, text, value, limit, fmt, at_least=False):
        if value is None:
            checks[issue].append((text, 'not measured', None))
        else:
            checks[issue].append((text, fmt(value), value >= limit if at_least else value <= limit))

    def faster(value):
        return '%.1fx faster' % value

    def mb(value):
        return '%.1f MB' % value

    f100, f500, f2000 = fig.get(100, {}), fig.get(500, {}), fig.get(2000, {})
    check(5, 'N=100 converge <= 1.0x shell loop', ratio(f100.get('converge'), f100.get('shell')), 1.0, fmt_ratio)
    check(5, 'N=100 re-run <= 0.75x shell loop', ratio(f100.get('rerun'), f100.get('shell')), 0.75, fmt_ratio)
    check(5, 'N=100 converge >= 20x faster than builtin playbook',
          ratio(f100.get('builtin'), f100.get('converge')), 20.0, faster, at_least=True)
    check(5, 'N=100 re-run >= 20x faster than builtin playbook',
          ratio(f100.get('builtin'), f100.get('rerun')), 20.0, faster, at_least=True)
    check(5, 'N=500 converge <= 0.3x shell loop', ratio(f500.get('converge'), f500.get('shell')), 0.3, fmt_ratio)
    check(5, 'N=500 re-run <= 0.15x shell loop', ratio(f500.get('rerun'), f500.get('shell')), 0.15, fmt_ratio)
    for phase in PHASES:
        check(5, 'growth N=100 -> 500 of role %s <= 5x' % phase,
              ratio(f500.get(phase), f100.get(phase)), 5.0, fmt_ratio)
    check(5, 'peak module RSS at N=500 <= 100 MB', peak_rss_mb(rss, 500), 100.0, mb)

    check(14, 'N=100 converge <= 2.0x expert script',
          ratio(f100.get('converge'), f100.get('expert_converge')), 2.0, fmt_ratio)
    check(14, 'N=500 converge <= 1.0x expert script',
          ratio(f500.get('converge'), f500.get('expert_converge')), 1.0, fmt_ratio)
    check(14, 'N=500 re-run <= 0.5x expert script',
          ratio(f500.get('rerun'), f500.get('expert_rerun')), 0.5, fmt_ratio)
    missing = [key for key in PHASES + tuple('expert_' + phase for phase in PHASES) if f2000.get(key) is None]
    if len(missing) == 2 * len(PHASES):
        checks[14].append(('N=2000 in the table (role and expert: converge, re-run, teardown)', 'not measured', None))
    else:
        checks[14].append(('N=2000 in the table (role and expert: converge, re-run, teardown)',
                           'missing: %s' % ', '.join(missing) if missing else 'all 6 phases', not missing))
    for phase in PHASES:
        check(14, 'growth N=500 -> 2000 of role %s <= 4x' % phase,
              ratio(f2000.get(phase), f500.get(phase)), 4.0, fmt_ratio)
    check(14, 'peak module RSS at N=2000 <= 200 MB', peak_rss_mb(rss, 2000), 200.0, mb)
    return checks


def target_lines(checks):
    """The targets table of each issue that has at least one measured target."""
    lines = []
    for issue in sorted(checks, reverse=True):
        rows = checks[issue]
        if not any(met is not None for dummy_text, dummy_value, met in rows):
            continue
        lines += ['', '## Targets (issue %d)' % issue, '', '| target | measured | |', '|---|---:|---|']
        for text, value, met in rows:
            lines.append('| %s | %s | %s |' % (text, value, {True: 'met', False: '**missed**',
                                                             None: 'not measured'}[met]))
    return lines


def verdict_lines(checks, status):
    """One line per issue: which targets are met, missed, not measured; and what the exit
    status means (functional failures only)."""
    lines = []
    for issue in sorted(checks, reverse=True):
        rows = checks[issue]
        if not any(met is not None for dummy_text, dummy_value, met in rows):
            continue
        met = [text for text, dummy_value, ok in rows if ok]
        missed = ['%s (%s)' % (text, value) for text, value, ok in rows if ok is False]
        unmeasured = [text for text, dummy_value, ok in rows if ok is None]
        lines.append('Issue %d targets: %d of %d met; missed: %s%s.' % (
            issue, len(met), len(rows), '; '.join(missed) or 'none',
            '; not measured: %s' % '; '.join(unmeasured) if unmeasured else ''))
    if status:
        lines.append('Exit status %d: a functional check failed or the run was stopped.' % status)
    else:
        lines.append('Exit status 0: every functional check passed (probes, re-runs with changed=0, '
                     'clean teardowns, root namespace unchanged); missed targets do not fail the run.')
    return lines


def growth_lines(fig, rss):
    """How each phase grows from one N to the next (role and expert), and the peak module RSS."""
    sizes = [n for n in sorted(fig) if isinstance(n, int)]
    if len(sizes) < 2:
        return []
    keys = [(phase, 'role ' + name) for phase, name in zip(PHASES, ('converge', 're-run', 'teardown'))]
    keys += [('expert_' + phase, 'expert ' + name) for phase, name in zip(PHASES, ('converge', 're-run', 'teardown'))]
    keys = [(key, name) for key, name in keys if any(fig[n].get(key) is not None for n in sizes)]
    head = ['N -> N'] + [name for dummy_key, name in keys] + ['peak module RSS']
    lines = ['', '## Growth with N (time at the larger N / time at the smaller N)', '',
             '| %s |' % ' | '.join(head), '|%s' % ('---:|' * len(head))]
    for low, high in zip(sizes, sizes[1:]):
        cells = ['%d -> %d (x%g)' % (low, high, high / float(low))]
        cells += [fmt_ratio(ratio(fig[high].get(key), fig[low].get(key))) for key, dummy_name in keys]
        low_rss, high_rss = peak_rss_mb(rss, low), peak_rss_mb(rss, high)
        cells.append('%s -> %s' % ('%.1f MB' % low_rss if low_rss else '-', '%.1f MB' % high_rss if high_rss else '-'))
        lines.append('| %s |' % ' | '.join(cells))
    return lines


def expert_lines(fig, rss):
    """The figures issue 14 names: the role against the expert script at each N, with the
    peak RSS of the module process."""
    sizes = [n for n in sorted(fig) if any(fig[n].get('expert_' + phase) for phase in PHASES)]
    if not sizes:
        return []
    head = ['N', 'role converge', 'expert converge', 'converge/expert', 'role re-run', 'expert re-run',
            're-run/expert', 'role teardown', 'expert teardown', 'teardown/expert', 'peak module RSS']
    lines = ['', '## The role against the expert script (issue 14; wall time, medians)', '',
             '| %s |' % ' | '.join(head), '|%s' % ('---:|' * len(head))]
    for n in sizes:
        f = fig[n]
        cells = [str(n)]
        for phase in PHASES:
            cells += [fmt_s(f[phase]), fmt_s(f['expert_' + phase]), fmt_ratio(ratio(f[phase], f['expert_' + phase]))]
        peak = peak_rss_mb(rss, n)
        cells.append('%.1f MB' % peak if peak else '-')
        lines.append('| %s |' % ' | '.join(cells))
    return lines


def round_ratios(samples, n, phase, baseline='shell'):
    """role/shell (or role/expert) of each round at N (the variants run interleaved, round
    by round)."""
    role = samples.get('role', {}).get(n, {}).get(phase, [])
    if baseline == 'shell':
        other = samples.get('shell', {}).get(n, {}).get('build', [])
    else:
        other = samples.get(baseline, {}).get(n, {}).get(phase, [])
    return [ratio(a, b) for a, b in zip(role, other)]


def timing_table(fig, title, expert=False):
    """The role against the baselines; with ``expert`` also the expert script's three phases
    and role/expert next to role/shell."""
    head = ['N', 'role converge', 'role re-run', 'role teardown', 'shell loop', 'builtin playbook']
    head += ['expert converge', 'expert re-run', 'expert teardown'] if expert else []
    head += ['converge/shell', 're-run/shell']
    head += ['converge/expert', 're-run/expert', 'teardown/expert'] if expert else []
    head += ['converge/builtin', 're-run/builtin']
    lines = ['| %s |' % ' | '.join(head), '|%s' % ('---:|' * len(head))]
    for n, f in fig.items():
        cells = [str(n)] + [fmt_s(f[key]) for key in ('converge', 'rerun', 'teardown', 'shell', 'builtin')]
        cells += [fmt_s(f['expert_' + phase]) for phase in PHASES] if expert else []
        cells += [fmt_ratio(ratio(f['converge'], f['shell'])), fmt_ratio(ratio(f['rerun'], f['shell']))]
        cells += [fmt_ratio(ratio(f[phase], f['expert_' + phase])) for phase in PHASES] if expert else []
        cells += [fmt_ratio(ratio(f['converge'], f['builtin'])), fmt_ratio(ratio(f['rerun'], f['builtin']))]
        lines.append('| %s |' % ' | '.join(cells))
    return ['', title, ''] + lines


def fmt_rate(value):
    return '-' if value is None else '{:,.0f}'.format(value)


def fmt_us(value):
    return '-' if value is None else '%.1f us' % value


def dataplane_section(bench, options):
    """Connections per second and connect() medians per shape and number of published ports."""
    results = bench.dataplane
    ports = sorted(set(p for dummy_shape, p in results))
    shapes = [shape for shape in dataplane.SHAPES if any(s == shape for s, dummy_p in results)]

    def med(shape, p, key):
        return median([r[key] for r in results.get((shape, p), [])])

    runs = sorted(set(len(v) for v in results.values()))
    lines = ['', '## Data plane: new TCP connections through a DNAT to the last of P published ports', '',
             'Client namespace -> router namespace (P DNAT rules, or one rule and a map of P elements) -> '
             'target namespace; one connection at a time, each reset after connect() (SO_LINGER 0); '
             'each point %g s or %d connections, whichever comes first, after %d warm-up connections; '
             'each figure the median of %s points; connect = median connect() time of a point '
             '(SYN to SYN-ACK, through the DNAT lookup). iptables is %s.' % (
                 options.dataplane_seconds, options.dataplane_limit, options.dataplane_warmup,
                 '/'.join(str(r) for r in runs), iptables_flavour()), '']
    head = ['published ports'] + ['%s conn/s' % s for s in shapes] + ['%s connect' % s for s in shapes]
    head += ['rules in the DNAT chains (%s)' % ' / '.join(shapes)]
    lines += ['| %s |' % ' | '.join(head), '|%s' % ('---:|' * len(head))]
    for p in ports:
        cells = [str(p)] + [fmt_rate(med(s, p, 'rate')) for s in shapes]
        cells += [fmt_us(med(s, p, 'connect_median_us')) for s in shapes]
        cells += [' / '.join(str(max(r['rules'] for r in results.get((s, p), [{'rules': 0}]))) for s in shapes)]
        lines.append('| %s |' % ' | '.join(cells))
    if len(ports) > 1:
        low, high = ports[0], ports[-1]
        cells = ['rate(%d)/rate(%d)' % (high, low)]
        cells += [fmt_ratio(ratio(med(s, high, 'rate'), med(s, low, 'rate'))) for s in shapes]
        cells += [fmt_ratio(ratio(med(s, high, 'connect_median_us'), med(s, low, 'connect_median_us')))
                  for s in shapes]
        cells += ['']
        lines.append('| %s |' % ' | '.join(cells))
        lines += ['', 'Last row: the rate ratio (1.00x: the number of ports costs nothing) and, in the '
                      'connect columns, connect(%d)/connect(%d).' % (high, low)]
    lines += ['', 'Point by point (connections per second / connect median, in the order they ran):', '',
              '| published ports | %s |' % ' | '.join(shapes), '|---:|%s' % ('---|' * len(shapes))]
    for p in ports:
        lines.append('| %d | %s |' % (p, ' | '.join(', '.join(
            '%s / %.0f us' % (fmt_rate(r['rate']), r['connect_median_us']) for r in results.get((s, p), []))
            for s in shapes)))
    slow = sum(r['slow'] for v in results.values() for r in v)
    lines += ['', 'Connections that waited for a SYN retransmission (connect() > %.1f s): %d.' % (
        dataplane.SLOW_CONNECT, slow)]
    return lines


def iptables_flavour():
    out = lab.sh(['iptables', '-V'], check=False).strip()
    return out or 'unknown'


def task_breakdown(bench, n, phase):
    """(median seconds, task, module) per role task at size n, largest first."""
    per_task = {}
    for tasks in bench.tasks.get((n, phase), []):
        for t in tasks:
            if t['status'] != 'skipped':
                key = (t['task'].replace(ROLE_TASK_PREFIX, ''), t['action'].split('.')[-1])
                per_task.setdefault(key, []).append(t['seconds'])
    return sorted(((median(v), name, action) for (name, action), v in per_task.items()), reverse=True)


def render(bench, options, status):
    wall, cpu = figures(bench.samples), figures(bench.samples, '_cpu')
    runs = sorted(set(len(values) for variant in bench.samples.values() for metrics in variant.values()
                      for values in metrics.values()) | set(len(v) for v in bench.dataplane.values()))
    loads = bench.loads
    steals = bench.steals
    lines = ['# linuxnet.netns benchmark', '',
             '`%s`' % ' '.join(['bench/run.py'] + options.argv), '',
             '%s; kernel %s, %d CPUs; module python %s; backend %s; pipelining %s; '
             'each figure the median of %s runs; 1-minute load average when timed steps started: '
             'median %s, max %s.' % (
                 time.strftime('%Y-%m-%d %H:%M'), os.uname().release, os.cpu_count(),
                 options.module_python, options.backend, 'on' if options.pipelining else 'off',
                 '/'.join(str(r) for r in runs) or '0',
                 '%.1f' % median(loads) if loads else '-', '%.1f' % max(loads) if loads else '-'),
             '', 'CPU steal during timed steps (the share of the machine\'s CPU time its hypervisor gave '
             'to other guests): median %s, max %s.' % (
                 '%.1f%%' % (100 * median(steals)) if steals else '-',
                 '%.1f%%' % (100 * max(steals)) if steals else '-')]
    expert = 'expert' in bench.samples
    if wall:
        lines += timing_table(wall, '## Wall time (the targets are on these)', expert)
        lines += expert_lines(wall, bench.rss)
        lines += growth_lines(wall, bench.rss)
        lines += target_lines(target_checks(wall, bench.rss))
        lines += round_table(bench.samples, expert)
        lines += timing_table(cpu, '## CPU time (user + system of the whole process tree; '
                                   'less sensitive to a busy machine)', expert)
    fleet = bench.samples.get('fleet')
    if fleet:
        lines += ['', '## Fleet: the role on 20 namespace hosts x 5 against 1 host x 100 (forks=%d)'
                  % options.fleet_forks, '',
                  '| hosts x inner namespaces | converge | re-run | teardown | converge CPU |',
                  '|---|---:|---:|---:|---:|']
        for label, metrics in fleet.items():
            lines.append('| %s | %s | %s | %s | %s |' % (
                label, fmt_s(median(metrics.get('converge', []))), fmt_s(median(metrics.get('rerun', []))),
                fmt_s(median(metrics.get('teardown', []))), fmt_s(median(metrics.get('converge_cpu', [])))))
    if bench.rss:
        lines += ['', '## Module processes (memory pass: one role cycle per N)', '',
                  'wait4: ru_maxrss that wait4(2) returns for the module\'s python process (it covers the '
                  'children it waited for, e.g. iptables-restore); VmHWM: the highest high-water mark of '
                  'that python process alone, read from /proc every %g s while it ran. The kernel updates '
                  'the high-water mark lazily, so either can be the larger by a little; the peak is the '
                  'larger of the two. MB = 2^20 bytes.' % MEMORY_SAMPLE_SECONDS, '',
                  '| N | peak RSS of our modules | wait4 ru_maxrss | python alone (VmHWM) | per module: peak RSS '
                  '(calls per converge + re-run + teardown) |',
                  '|---:|---:|---:|---:|---|']
        for n, peaks in sorted(bench.rss.items()):
            calls = bench.module_calls.get(n, {})
            lines.append('| %d | %s | %s | %s | %s |' % (
                n, '%.1f MB' % (peak_rss_mb(bench.rss, n) or 0), '%.1f MB' % (peak_rss_mb(bench.maxrss, n) or 0),
                '%.1f MB' % (peak_rss_mb(bench.hwm, n) or 0),
                ', '.join('%s %.1f MB (%d)' % (m, kb / 1024.0, calls.get(m, 0)) for m, kb in sorted(peaks.items()))))
    sizes = sorted(set(n for (n, dummy_phase) in bench.tasks))
    if sizes:
        n = sizes[-1]
        lines += ['', '## Where the role spends its time at N=%d (median seconds per task)' % n, '']
        for phase in PHASES:
            rows = task_breakdown(bench, n, phase)
            if rows:
                lines.append('- %s: %s' % (phase, '; '.join(
                    '%s [%s] %.2f' % (name, action, sec) for sec, name, action in rows[:10])))
    if bench.dataplane:
        lines += dataplane_section(bench, options)
    if wall:
        lines += [''] + verdict_lines(target_checks(wall, bench.rss), status)
    if status:
        lines += ['', '**This run FAILED (status %d)**; the figures above are partial.' % status]
    return '\n'.join(lines) + '\n'


def round_table(samples, expert):
    """role/shell (and role/expert) of each round: a slow round shows against its neighbours."""
    sizes = sorted(samples.get('role', {}))
    columns = [('converge', 'shell'), ('rerun', 'shell')]
    if expert:
        columns += [(phase, 'expert') for phase in PHASES]
    rows = [(n, [round_ratios(samples, n, phase, baseline) for phase, baseline in columns]) for n in sizes]
    if not any(any(cells) for dummy_n, cells in rows):
        return []
    names = {'converge': 'converge', 'rerun': 're-run', 'teardown': 'teardown'}
    title = 'role and shell loop' + (' / expert script' if expert else '') + ' of the same round'
    lines = ['', '## Round by round (%s)' % title, '',
             '| N | %s |' % ' | '.join('%s/%s' % (names[phase], baseline) for phase, baseline in columns),
             '|---:|%s' % ('---|' * len(columns))]
    for n, cells in rows:
        lines.append('| %d | %s |' % (n, ' | '.join(', '.join(fmt_ratio(r) for r in cell) or '-' for cell in cells)))
    return lines


# --- main --------------------------------------------------------------------------------

def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n', maxsplit=1)[0])
    parser.add_argument('--quick', action='store_true',
                        help='development mode: N=10,100, builtin only at N=10, no fleet')
    parser.add_argument('--runs', type=int, default=3, help='runs per figure (median; default 3)')
    parser.add_argument('--sizes', default=None, help='comma-separated N (default 10,100,500)')
    parser.add_argument('--builtin-sizes', default=None, help='N for the builtin playbook (default 10,100)')
    parser.add_argument('--builtin-runs', type=int, default=None, help='runs of the builtin playbook')
    parser.add_argument('--variants', default=None,
                        help='any of %s (default %s)' % (','.join(VARIANTS), DEFAULT_VARIANTS))
    parser.add_argument('--dataplane', action='store_true',
                        help='the data plane bench (variant dataplane); alone, only that')
    parser.add_argument('--dataplane-ports', default='10,500,2000',
                        help='numbers of published ports (default 10,500,2000)')
    parser.add_argument('--dataplane-seconds', type=float, default=3.0,
                        help='longest measurement of one point, seconds (default 3)')
    parser.add_argument('--dataplane-limit', type=int, default=200000,
                        help='most connections of one point (default 200000)')
    parser.add_argument('--dataplane-warmup', type=int, default=200,
                        help='connections before the clock of a point starts (default 200)')
    parser.add_argument('--dataplane-runs', type=int, default=None, help='points per figure (default --runs)')
    parser.add_argument('--fleet-forks', type=int, default=10)
    parser.add_argument('--fleet-runs', type=int, default=None)
    parser.add_argument('--module-python', default=DEFAULT_MODULE_PYTHON,
                        help='interpreter of the module processes (default: the venv python)')
    parser.add_argument('--backend', default='iptables', choices=['iptables', 'nftables', 'auto'],
                        help='netns_nat_backend of the role (default iptables, like the shell loop)')
    parser.add_argument('--pipelining', action='store_true',
                        help='ANSIBLE_PIPELINING=1 for the Ansible variants (ansible.cfg leaves it off)')
    parser.add_argument('--max-load', type=float, default=None,
                        help='start each timed step only below this 1-minute load average')
    parser.add_argument('--load-wait', type=float, default=600,
                        help='longest wait for --max-load, seconds (then run anyway)')
    parser.add_argument('--profile', type=int, metavar='N',
                        help='only profile the module processes of one role cycle at N')
    parser.add_argument('--keep', action='store_true',
                        help='keep the work directory (inventories, task and RSS logs)')
    parser.add_argument('--results', default=None,
                        help='where the tables go (default bench/results/latest.md, '
                             'bench/results/dataplane.md for a data plane run alone)')
    options = parser.parse_args(argv)
    options.argv = list(argv)
    if options.quick:
        options.sizes = options.sizes or '10,100'
        options.builtin_sizes = options.builtin_sizes or '10'
        options.variants = options.variants or 'role,shell,expert,builtin,memory'
    if options.dataplane:
        options.variants = ','.join(filter(None, [options.variants, 'dataplane']))
    options.sizes = [int(x) for x in (options.sizes or '10,100,500').split(',')]
    options.builtin_sizes = [int(x) for x in (options.builtin_sizes or '10,100').split(',')]
    options.builtin_runs = options.builtin_runs or options.runs
    options.fleet_runs = options.fleet_runs or options.runs
    options.variants = set((options.variants or DEFAULT_VARIANTS).split(','))
    unknown = options.variants - set(VARIANTS)
    if unknown:
        parser.error('unknown variants: %s' % ', '.join(sorted(unknown)))
    options.dataplane_ports = sorted(int(x) for x in options.dataplane_ports.split(','))
    options.dataplane_runs = options.dataplane_runs or options.runs
    if min(options.dataplane_ports) < 1 or max(options.dataplane_ports) > 65535 - dataplane.FIRST_PORT:
        parser.error('--dataplane-ports must be between 1 and %d' % (65535 - dataplane.FIRST_PORT))
    if options.results is None:
        name = 'dataplane.md' if options.variants == {'dataplane'} else 'latest.md'
        options.results = os.path.join(RESULTS_DIR, name)
    if options.runs < 1:
        parser.error('--runs must be at least 1')
    if max(options.sizes + options.builtin_sizes) > lab.MAX_INNER:
        parser.error('N above %d does not fit the address plan' % lab.MAX_INNER)
    return options


def raise_on_signal(signum, frame):
    raise SystemExit(128 + signum)


def measure(bench, options):
    if options.profile:
        bench.profile(options.profile)
        return
    for run in range(options.runs):
        for n in options.sizes:
            # Interleaved, so that a slower minute of the machine hits every variant.
            if 'shell' in options.variants:
                bench.shell(n)
            if 'expert' in options.variants:
                bench.expert(n)
            if 'role' in options.variants:
                bench.role(n)
            if 'builtin' in options.variants and n in options.builtin_sizes and run < options.builtin_runs:
                bench.builtin(n)
    for n in [n for n in options.builtin_sizes if n not in options.sizes]:
        for dummy_run in range(options.builtin_runs if 'builtin' in options.variants else 0):
            bench.builtin(n)
    if 'memory' in options.variants:
        for n in options.sizes:
            bench.memory(n)
    if 'fleet' in options.variants:
        for dummy_run in range(options.fleet_runs):
            bench.fleet()
    if 'dataplane' in options.variants:
        bench.dataplane_rounds()


def main():
    options = parse_args(sys.argv[1:])
    isolate()
    # Also when started from a script that ignores SIGINT (background jobs do).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, raise_on_signal)
    signal.signal(signal.SIGHUP, raise_on_signal)
    before = root_snapshot()
    bench = Bench(options)
    status = 0
    try:
        measure(bench, options)
    except BenchFailure as exc:
        bench.say('BENCH FAILED: %s' % exc)
        status = 1
    except KeyboardInterrupt:
        bench.say('interrupted')
        status = 130
    except SystemExit as exc:
        bench.say('stopped by a signal')
        status = exc.code if isinstance(exc.code, int) else 1
    finally:
        removed = lab.cleanup(settle=False)
        if removed:
            bench.say('removed %d lab namespaces' % len(removed))
        if options.keep:
            bench.say('work directory kept: %s' % bench.ws.path)
        else:
            bench.close()
        after = root_snapshot()
        if before != after:
            changed = [key for key in before if before[key] != after[key]]
            bench.say('ROOT NAMESPACE CHANGED during the bench (%s): this must never happen'
                      % ', '.join(changed))
            status = status or 3
    if options.profile:
        return status
    text = render(bench, options, status)
    os.makedirs(os.path.dirname(options.results), exist_ok=True)
    with open(options.results, 'w') as handle:
        handle.write(text)
    print('\n' + text)
    print('written to %s' % options.results)
    return status


if __name__ == '__main__':
    sys.exit(main())
