# SPDX-License-Identifier: GPL-3.0-or-later
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Data plane of the DNAT rule shapes (issue 14): what the NUMBER of published ports costs
the first packet of a connection, for the shapes our backends write and for an nft map.

    client namespace            router namespace                    target namespace
    eth0 10.99.1.2/24 <--veth--> vc 10.99.1.1/24
                                 vt 10.99.2.1/24        <--veth-->  eth0 10.99.2.2/24
                                                                    one listener on :80
    published: 10.99.1.1:20000 .. 20000+P-1, each DNAT'ed to 10.99.2.2:80

Shapes (built directly with iptables-restore / nft -f, not through the role; the rule text
is rendered by the collection's own nat_model, so it is exactly what the backends write):

- iptables: chain LNT-PREROUTING (nat), jumped to from PREROUTING, one DNAT rule per port
  (nat_iptables.iptables_entries); iptables is iptables-nft or legacy, whichever the host has;
- nft-rules: table inet linuxnet_netns, chain prerouting, one rule per port (each line rendered
  as a rule with nat_nftables.nft_expr: what the nft backend wrote up to 0.2.0);
- nft: what the nft backend writes now (nat_nftables.nft_entries + plan_table on an empty
  table): ONE rule, `dnat ip to ip daddr . tcp dport map @lnt_prerouting_...`, and a map of P
  elements (published address . port : target . port), each tagged with its rule's comment.

A client process in the client namespace connects to the LAST published port (the worst
case of a linear rule list: its first packet walks all P rules) again and again, closing
each connection with a RST (SO_LINGER 0: no TIME_WAIT, so the bounded run never runs out of
source ports), and reports connections per second and the median connect() time (SYN out to
SYN-ACK back, which includes the DNAT lookup in the router). NAT rules only see the first
packet of a connection (conntrack remembers the translation), so this is where they cost.
Client and listener share one CPU, the listener as SCHED_BATCH (see serve()).

Run as `bench/run.py --dataplane`; this file is also the client and server processes
(`dataplane.py serve|client ...`, started inside the namespaces with `ip netns exec`).
"""

import argparse
import json
import os
import socket
import statistics
import struct
import subprocess
import sys
import time

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.dirname(BENCH_DIR)
COLLECTIONS_ROOT = os.path.join(REPO_ROOT, '.build', 'collections')

SHAPES = ('iptables', 'nft-rules', 'nft')
PUBLISHED_ADDRESS = '10.99.1.1'
CLIENT_ADDRESS = '10.99.1.2'
ROUTER_TARGET_SIDE = '10.99.2.1'
TARGET_ADDRESS = '10.99.2.2'
TARGET_PORT = 80
FIRST_PORT = 20000
# A connect() slower than this waited for a SYN retransmission (a dropped SYN): counted,
# so that a figure hiding drops shows it.
SLOW_CONNECT = 0.5
CLIENT_PORT_RANGE = (1024, 65535)


# --- rule sets ----------------------------------------------------------------------------

def nat_modules():
    """The collection's rule model and its two backends (imported here: the client and server
    processes of this file do not need them)."""
    if COLLECTIONS_ROOT not in sys.path:
        sys.path.insert(0, COLLECTIONS_ROOT)
    from ansible_collections.linuxnet.netns.plugins.module_utils import nat_iptables, nat_model, nat_nftables
    return nat_model, nat_iptables, nat_nftables


def published_ports(count):
    return [FIRST_PORT + k for k in range(count)]


def dnat_rules(count):
    """The role's DNAT rule for each published port (as plugins/filter/netns_nat.py makes
    them: destination, to_address, to_port, out_interface, scoped forward, hairpin default)."""
    model, ipt, nft = nat_modules()
    items = [('rules[%d].' % k, {
        'kind': 'dnat', 'protocol': 'tcp', 'port': port, 'destination': PUBLISHED_ADDRESS,
        'to_address': TARGET_ADDRESS, 'to_port': TARGET_PORT, 'out_interface': 'vt',
    }) for k, port in enumerate(published_ports(count))]
    return model.parse_rules(items)


def iptables_ruleset(count):
    """iptables-restore input: LNT-PREROUTING with our DNAT lines, entered from PREROUTING
    (only the prerouting lines: they are what the first packet's DNAT lookup walks)."""
    model, ipt, nft = nat_modules()
    chain = ipt.IPTABLES_CHAINS['prerouting'][1]
    entries = ipt.iptables_entries(dnat_rules(count), roles=('prerouting',))
    lines = ['*nat', ':%s - [0:0]' % chain,
             '-A PREROUTING -m comment --comment "%s" -j %s' % (model.JUMP_TAG, chain)]
    lines += ['-A %s %s' % (entry.chain, entry.text) for entry in entries]
    return '\n'.join(lines + ['COMMIT']) + '\n'


def nft_rules_ruleset(count):
    """nft -f input: our table and prerouting chain, one rule per published port."""
    model, ipt, nft = nat_modules()
    table = '%s %s' % (nft.NFT_FAMILY, nft.NFT_TABLE)
    lines = ['add table %s' % table,
             'add chain %s prerouting { type nat hook prerouting priority -100; policy accept; }' % table]
    lines += ['add rule %s prerouting %s' % (table, nft.nft_expr(line))
              for dummy_rid, line in model.ordered_lines(dnat_rules(count)) if line.chain == 'prerouting']
    return '\n'.join(lines) + '\n'


def nft_backend_ruleset(count):
    """nft -f input: the batch the nft backend writes for the DNAT lines on an empty table."""
    model, ipt, nft = nat_modules()
    entries = [entry for entry in nft.nft_entries(dnat_rules(count)) if entry.role == 'prerouting']
    [batch] = nft.plan_table(nft.NftTable(), [], [], entries)
    return batch.data


def ruleset(shape, count):
    """(argv run inside the router, input) that loads ``shape`` with ``count`` ports."""
    if shape == 'iptables':
        return ['iptables-restore', '-w', '--noflush'], iptables_ruleset(count)
    if shape == 'nft-rules':
        return ['nft', '-f', '-'], nft_rules_ruleset(count)
    if shape == 'nft':
        return ['nft', '-f', '-'], nft_backend_ruleset(count)
    raise ValueError('unknown shape %s' % shape)


def rule_count(shape, text):
    """How many rules the first packet can walk in the DNAT chain(s) of ``text``."""
    if shape == 'iptables':
        return sum(1 for line in text.splitlines() if line.startswith('-A '))
    return sum(1 for line in text.splitlines() if line.startswith(('add rule ', 'insert rule ')))


# --- the namespaces -----------------------------------------------------------------------

class DataplaneLab(object):
    """Client, router and target namespaces of one measured point (fresh each time, so no
    conntrack entry or rule of an earlier point is left)."""

    def __init__(self, lab):
        self.lab = lab
        self.client = lab.PREFIX + 'dc'
        self.router = lab.PREFIX + 'dr'
        self.target = lab.PREFIX + 'dt'
        self.server = None

    @property
    def names(self):
        return [self.client, self.router, self.target]

    def build(self):
        lab = self.lab
        lab.ip_batch(['netns add %s' % name for name in self.names])
        lab.ip_batch([
            'link set lo up',
            'link add vc type veth peer name eth0 netns %s' % self.client,
            'link add vt type veth peer name eth0 netns %s' % self.target,
            'addr add %s/24 dev vc' % PUBLISHED_ADDRESS,
            'addr add %s/24 dev vt' % ROUTER_TARGET_SIDE,
            'link set vc up',
            'link set vt up',
        ], self.router)
        for name, address, gateway in ((self.client, CLIENT_ADDRESS, PUBLISHED_ADDRESS),
                                       (self.target, TARGET_ADDRESS, ROUTER_TARGET_SIDE)):
            lab.ip_batch(['link set lo up', 'addr add %s/24 dev eth0' % address, 'link set eth0 up',
                          'route add default via %s' % gateway], name)
        lab.sh(['ip', 'netns', 'exec', self.router, 'sysctl', '-q', '-w', 'net.ipv4.ip_forward=1'])
        # More source ports, fewer reuses. A reused one is still a new connection for the
        # router: a SYN on a reset conntrack entry makes the kernel drop the entry and look
        # the packet up again (the iptables shape's rule counter proves it, see measure_point).
        lab.sh(['ip', 'netns', 'exec', self.client, 'sysctl', '-q', '-w',
                'net.ipv4.ip_local_port_range=%d %d' % CLIENT_PORT_RANGE])

    def load(self, shape, count):
        argv, text = ruleset(shape, count)
        self.lab.sh(['ip', 'netns', 'exec', self.router] + argv, input=text)
        return rule_count(shape, text)

    def start_server(self):
        """The listener in the target namespace; returns once it listens."""
        self.server = subprocess.Popen(
            ['ip', 'netns', 'exec', self.target, sys.executable, os.path.abspath(__file__), 'serve',
             '--port', str(TARGET_PORT)],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, text=True, start_new_session=True)
        line = self.server.stdout.readline().strip()
        if line != 'ready':
            raise RuntimeError('the dataplane server did not start (said %r)' % line)

    def run_client(self, port, seconds, limit, warmup, timeout):
        argv = ['ip', 'netns', 'exec', self.client, sys.executable, os.path.abspath(__file__), 'client',
                '--address', PUBLISHED_ADDRESS, '--port', str(port), '--closed-port', str(FIRST_PORT - 1),
                '--seconds', str(seconds), '--limit', str(limit), '--warmup', str(warmup)]
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
        try:
            result = json.loads(proc.stdout)
        except ValueError:
            result = {'ok': False, 'error': 'no result: %s %s' % (proc.stdout[-500:], proc.stderr[-500:])}
        return result

    def destroy(self):
        if self.server is not None:
            try:
                os.killpg(self.server.pid, 9)
            except OSError:
                pass
            self.server.wait()
            self.server = None
        self.lab.delete_namespaces([name for name in self.names
                                    if os.path.exists(os.path.join(self.lab.NETNS_DIR, name))])


def check_last_rule(point, connections, result):
    """The last DNAT rule must have matched every connection (packets of its counter: the
    first packet of each connection only): no connection got through without a lookup."""
    model, ipt, nft = nat_modules()
    chain = ipt.IPTABLES_CHAINS['prerouting'][1]
    out = point.lab.sh(['ip', 'netns', 'exec', point.router, 'iptables', '-w', '-t', 'nat', '-L', chain,
                        '-v', '-x', '-n'])
    packets = int(out.strip().splitlines()[-1].split()[0])
    result['last_rule_packets'] = packets
    if packets < connections:
        result['ok'] = False
        result['error'] = 'the last DNAT rule matched %d times for %d connections' % (packets, connections)


def measure_point(lab, shape, count, seconds, limit, warmup):
    """One point: fresh namespaces, ``shape`` with ``count`` ports, the client against the
    last port. Returns the client's result plus the number of rules loaded."""
    point = DataplaneLab(lab)
    try:
        point.build()
        rules = point.load(shape, count)
        point.start_server()
        result = point.run_client(FIRST_PORT + count - 1, seconds, limit, warmup, timeout=seconds + 60)
        result['rules'] = rules
        if result['ok'] and shape == 'iptables':
            check_last_rule(point, result['connections'] + warmup, result)
        return result
    finally:
        point.destroy()


# --- the processes inside the namespaces ----------------------------------------------------

def pin():
    """Client and listener on one CPU (the last one). The handshake runs in the client's
    softirq on its CPU; a listener sleeping in accept() on another CPU is woken by an
    inter-processor interrupt for every connection (costly in a VM, the more so when that
    CPU idles). One CPU also leaves the other to the machine's other users."""
    cpus = sorted(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {cpus[-1]})


def serve(port):
    """Accept and close. SCHED_BATCH: the listener's wake-up never preempts the client in
    the middle of its connect() (which made connect() times jump between ~11 and ~20 us
    from one point to the next, whatever the rules); it drains the accept queue (4,096) in
    batches when the client's time slice ends."""
    pin()
    os.sched_setscheduler(0, os.SCHED_BATCH, os.sched_param(0))
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(('0.0.0.0', port))
    listener.listen(4096)
    print('ready', flush=True)
    while True:
        conn, dummy_peer = listener.accept()
        conn.close()


def connect_once(address, port, linger):
    """Seconds of one connect(); the socket is then reset (SO_LINGER 0)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
        sock.settimeout(5.0)
        started = time.perf_counter()
        sock.connect((address, port))
        return time.perf_counter() - started
    finally:
        sock.close()


def refused(address, port):
    """True if ``port`` (not published) is refused: the router answers it itself, so a
    success on the published port really went through a DNAT."""
    try:
        connect_once(address, port, struct.pack('ii', 1, 0))
    except ConnectionRefusedError:
        return True
    except OSError:
        return False
    return False


def client(address, port, closed_port, seconds, limit, warmup):
    linger = struct.pack('ii', 1, 0)
    pin()
    if not refused(address, closed_port):
        return {'ok': False, 'error': 'unpublished port %d was not refused' % closed_port}
    try:
        for dummy in range(warmup):  # neighbour entries, caches, the server's first accepts
            connect_once(address, port, linger)
        times = []
        started = time.perf_counter()
        deadline = started + seconds
        while len(times) < limit and time.perf_counter() < deadline:
            times.append(connect_once(address, port, linger))
        elapsed = time.perf_counter() - started
    except OSError as exc:
        return {'ok': False, 'error': 'connection to %s:%d failed: %s' % (address, port, exc)}
    ordered = sorted(times)
    return {
        'ok': True,
        'connections': len(times),
        'seconds': elapsed,
        'rate': len(times) / elapsed,
        'connect_median_us': statistics.median(ordered) * 1e6,
        'connect_p90_us': ordered[int(0.9 * (len(ordered) - 1))] * 1e6,
        'slow': sum(1 for t in times if t > SLOW_CONNECT),
    }


def main(argv):
    parser = argparse.ArgumentParser(description='dataplane bench processes (run by bench/run.py)')
    sub = parser.add_subparsers(dest='command', required=True)
    serve_parser = sub.add_parser('serve')
    serve_parser.add_argument('--port', type=int, required=True)
    client_parser = sub.add_parser('client')
    client_parser.add_argument('--address', required=True)
    client_parser.add_argument('--port', type=int, required=True)
    client_parser.add_argument('--closed-port', type=int, required=True)
    client_parser.add_argument('--seconds', type=float, required=True)
    client_parser.add_argument('--limit', type=int, required=True)
    client_parser.add_argument('--warmup', type=int, required=True)
    options = parser.parse_args(argv)
    if options.command == 'serve':
        serve(options.port)
        return 0
    result = client(options.address, options.port, options.closed_port, options.seconds, options.limit,
                    options.warmup)
    json.dump(result, sys.stdout)
    return 0 if result['ok'] else 1


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
