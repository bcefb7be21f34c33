# SPDX-License-Identifier: GPL-3.0-or-later
"""Debian 12 VMs for the molecule scenario molecule/vm, all networking inside one network
namespace of this machine (the root namespace is never touched). Run as root, with python3:

    tests/vm/lnvm.py build [--force]
        build the base image into .build/vm/images/<key>/ (mmdebstrap; reused while
        tests/vm/image/ and the settings below are unchanged, older images are removed)
    tests/vm/lnvm.py up [--vm NAME=ADDRESS/PREFIX ...] [--lan ADDRESS/PREFIX] [--json]
        build if needed, create the namespace lnvm-net with a bridge (the controller's
        address --lan) and a tap per VM, boot the VMs from copy-on-write overlays of the
        image, wait until each accepts SSH (default: nat 192.168.77.32, client .15, lan .1)
    tests/vm/lnvm.py down
        stop the VMs (and every process inside lnvm-net), delete the overlays and the
        namespace; always safe to run; fails if anything of ours is left
    tests/vm/lnvm.py status | ssh NAME [COMMAND...]
        what runs; log in to a VM (ssh runs inside lnvm-net)
    tests/vm/lnvm.py relay HOST PORT
        stdin/stdout <-> HOST:PORT, the ProxyCommand of the controller's ssh, run as
        'ip netns exec lnvm-net python3 tests/vm/lnvm.py relay %h %p'

The VMs boot the image's uncompressed kernel directly (-kernel vmlinux), with KVM when a
probe boot shows that it works on this machine and with TCG otherwise (LNVM_ACCEL=kvm|tcg
forces one; LNVM_CPU sets the TCG CPU model, default max). Each VM's address comes from the
kernel command line (lnvm.net=MAC,ADDRESS,GATEWAY, read by lnvm-network.service in the image),
its host name from systemd.hostname=. Ansible logs in as 'lnvm' (sudo without password) with
the key pair of the image's cache directory. Console logs stay in .build/vm/logs/.
Every process is started from an argv list, never through a shell."""
import argparse
import glob
import hashlib
import ipaddress
import json
import lzma
import os
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import time
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
IMAGE_SRC = os.path.join(HERE, 'image')
CACHE = os.path.join(REPO, '.build', 'vm')
IMAGES = os.path.join(CACHE, 'images')
RUN = os.path.join(CACHE, 'run')
LOGS = os.path.join(CACHE, 'logs')

NETNS = 'lnvm-net'
BRIDGE = 'lnvm-br0'
USER = 'lnvm'
SUITE = 'bookworm'
MIRROR = os.environ.get('LNVM_MIRROR', 'http://deb.debian.org/debian')
# Part of the cache key: change it when the build steps below change.
BUILD_RECIPE = 3
IMAGE_SIZE = 2 * 1024 ** 3  # the ext4 file system (sparse; the qcow2 holds only what is used)
DEFAULT_VMS = ['nat=192.168.77.32/24', 'client=192.168.77.15/24']
DEFAULT_LAN = '192.168.77.1/24'
KERNEL_ARGS = ['console=ttyS0', 'rw', 'fsck.mode=skip', 'panic=-1', 'mitigations=off', 'quiet', 'loglevel=4']
SSH_OPTIONS = ['-o', 'BatchMode=yes', '-o', 'StrictHostKeyChecking=no', '-o', 'UserKnownHostsFile=/dev/null',
               '-o', 'LogLevel=ERROR', '-o', 'IdentitiesOnly=yes']


def log(message):
    print('lnvm: %s' % message, file=sys.stderr, flush=True)


def run(argv, check=True, **kwargs):
    return subprocess.run(argv, check=check, **kwargs)


def netns_exec(argv):
    return ['ip', 'netns', 'exec', NETNS] + argv


# ---------------------------------------------------------------------------------------------
# The base image

def packages():
    with open(os.path.join(IMAGE_SRC, 'packages.txt'), encoding='utf-8') as stream:
        lines = (line.split('#', 1)[0].strip() for line in stream)
        return [line for line in lines if line]


def image_key():
    """Hash of everything that goes into the image: tests/vm/image/ (paths, modes, contents)
    and the build settings."""
    digest = hashlib.sha256()
    digest.update(json.dumps([BUILD_RECIPE, SUITE, MIRROR, IMAGE_SIZE]).encode())
    for directory, dirs, files in os.walk(IMAGE_SRC):
        dirs.sort()
        for name in sorted(files):
            path = os.path.join(directory, name)
            digest.update(os.path.relpath(path, IMAGE_SRC).encode() + b'\0')
            digest.update(b'%o\0' % (os.stat(path).st_mode & 0o7777))
            with open(path, 'rb') as stream:
                digest.update(stream.read() + b'\0')
    return digest.hexdigest()[:16]


def image_dir():
    return os.path.join(IMAGES, image_key())


def image_ready(directory):
    return os.path.exists(os.path.join(directory, 'image.json'))


def decompressors():
    """(magic, function bytes -> bytes) for the payloads a bzImage may carry."""
    def xz(data):
        return lzma.LZMADecompressor(format=lzma.FORMAT_XZ).decompress(data)

    def lzma_alone(data):
        return lzma.LZMADecompressor(format=lzma.FORMAT_ALONE).decompress(data)

    def gz(data):
        return zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(data)

    def tool(argv):
        def decompress(data):
            # these tools stop with an error at the trailing data; the output so far is whole
            return subprocess.run(argv, input=data, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                  check=False).stdout
        return decompress

    return [(b'\xfd7zXZ\x00', xz), (b'\x28\xb5\x2f\xfd', tool(['zstd', '-dc'])),
            (b'\x1f\x8b\x08', gz), (b'\x02\x21\x4c\x18', tool(['lz4', '-dc'])),
            (b'\x5d\x00\x00\x00', lzma_alone)]


def extract_vmlinux(vmlinuz, out):
    """Write the uncompressed ELF kernel inside a bzImage (what scripts/extract-vmlinux of the
    kernel does): decompressing a bzImage under TCG takes the guest about 100 s."""
    with open(vmlinuz, 'rb') as stream:
        data = stream.read()
    for magic, decompress in decompressors():
        start = data.find(magic)
        while start >= 0:
            try:
                payload = decompress(data[start:])
            except (lzma.LZMAError, zlib.error, OSError, EOFError, ValueError):
                payload = b''
            if payload[:4] == b'\x7fELF':
                with open(out, 'wb') as stream:
                    stream.write(payload)
                return
            start = data.find(magic, start + 1)
    raise SystemExit('lnvm: no ELF kernel found in %s' % vmlinuz)


def build(force=False):
    """Build the base image once; return its directory."""
    final = image_dir()
    if image_ready(final) and not force:
        return final
    for tool in ('mmdebstrap', 'mkfs.ext4', 'qemu-img', 'ssh-keygen'):
        if shutil.which(tool) is None:
            raise SystemExit('lnvm: %s not found (apt-get install qemu-system-x86 qemu-utils mmdebstrap '
                             'e2fsprogs lz4 openssh-client)' % tool)
    os.makedirs(IMAGES, exist_ok=True)
    work = final + '.tmp'
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    started = time.monotonic()
    key = os.path.join(work, 'id_ed25519')
    run(['ssh-keygen', '-q', '-t', 'ed25519', '-N', '', '-C', 'lnvm-molecule', '-f', key])
    with open(key + '.pub', encoding='utf-8') as stream:
        public_key = stream.read().strip()
    root = os.path.join(work, 'root')
    argv = ['mmdebstrap', '--mode=root', '--variant=apt', '--format=directory',
            '--include=' + ','.join(packages()),
            '--aptopt=Acquire::Languages "none"',
            '--dpkgopt=path-exclude=/usr/share/man/*', '--dpkgopt=path-exclude=/usr/share/locale/*',
            '--dpkgopt=path-exclude=/usr/share/doc/*', '--dpkgopt=path-include=/usr/share/doc/*/copyright',
            '--setup-hook=' + os.path.join(IMAGE_SRC, 'setup.sh'),
            '--customize-hook=' + os.path.join(IMAGE_SRC, 'customize.sh'),
            SUITE, root, MIRROR]
    log('building the base image %s (mmdebstrap %s)' % (os.path.basename(final), SUITE))
    run(argv, env=dict(os.environ, LNVM_AUTHORIZED_KEY=public_key))
    boot = os.path.join(root, 'boot')
    vmlinuz = sorted(glob.glob(os.path.join(boot, 'vmlinuz-*')))
    initrd = sorted(glob.glob(os.path.join(boot, 'initrd.img-*')))
    if len(vmlinuz) != 1 or len(initrd) != 1:
        raise SystemExit('lnvm: expected one kernel and one initrd in %s' % boot)
    extract_vmlinux(vmlinuz[0], os.path.join(work, 'vmlinux'))
    shutil.copyfile(initrd[0], os.path.join(work, 'initrd.img'))
    raw = os.path.join(work, 'root.raw')
    with open(raw, 'wb') as stream:
        stream.truncate(IMAGE_SIZE)
    run(['mkfs.ext4', '-q', '-F', '-L', 'lnvm-root', '-d', root, raw])
    run(['qemu-img', 'convert', '-f', 'raw', '-O', 'qcow2', raw, os.path.join(work, 'base.qcow2')])
    os.unlink(raw)
    shutil.rmtree(root)
    info = {'key': os.path.basename(final), 'kernel': os.path.basename(vmlinuz[0])[len('vmlinuz-'):],
            'packages': packages(), 'build_seconds': round(time.monotonic() - started, 1),
            'qcow2_bytes': os.path.getsize(os.path.join(work, 'base.qcow2'))}
    with open(os.path.join(work, 'image.json'), 'w', encoding='utf-8') as stream:
        json.dump(info, stream, indent=2)
    shutil.rmtree(final, ignore_errors=True)
    os.rename(work, final)
    for other in glob.glob(os.path.join(IMAGES, '*')):
        if other != final:
            log('removing the old image %s' % os.path.basename(other))
            shutil.rmtree(other, ignore_errors=True)
    log('image built in %.0f s (%d MiB qcow2)' % (info['build_seconds'], info['qcow2_bytes'] // 2 ** 20))
    return final


# ---------------------------------------------------------------------------------------------
# VMs

def parse_vms(specs):
    vms = []
    for spec in specs:
        name, sep, address = spec.partition('=')
        if not sep or not name.isalnum() or len(name) > 8:
            raise SystemExit('lnvm: --vm NAME=ADDRESS/PREFIX, NAME 1 to 8 letters or digits: %r' % spec)
        interface = ipaddress.ip_interface(address)
        octets = interface.ip.packed
        vms.append({'name': name, 'address': str(interface.ip), 'cidr': str(interface),
                    # a locally administered MAC derived from the address (unique on the LAN)
                    'mac': '52:54:%02x:%02x:%02x:%02x' % tuple(octets),
                    'tap': 'lnvm-t-' + name})
    if len({vm['address'] for vm in vms}) != len(vms) or len({vm['name'] for vm in vms}) != len(vms):
        raise SystemExit('lnvm: VM names and addresses must be unique')
    return vms


def qemu_argv(vm, image, accel, memory, network=True, console=None, daemonize=True, kernel_args=None):
    overlay = os.path.join(RUN, vm['name'] + '.qcow2')
    append = KERNEL_ARGS if kernel_args is None else kernel_args
    append = append + ['root=/dev/vda', 'systemd.hostname=' + vm['name']]
    if network:
        append.append('lnvm.net=%s,%s,%s' % (vm['mac'], vm['cidr'], vm.get('gateway', '')))
    argv = ['qemu-system-x86_64', '-name', 'lnvm-' + vm['name'], '-machine', 'pc', '-accel', accel,
            '-cpu', 'host' if accel == 'kvm' else os.environ.get('LNVM_CPU', 'max'), '-smp', '1', '-m', str(memory),
            '-nodefaults', '-no-user-config', '-display', 'none', '-vga', 'none',
            '-kernel', os.path.join(image, 'vmlinux'), '-initrd', os.path.join(image, 'initrd.img'),
            '-append', ' '.join(append),
            '-drive', 'file=%s,if=virtio,format=qcow2,cache=unsafe,discard=unmap' % overlay,
            '-device', 'virtio-rng-pci',
            '-serial', 'file:' + (console or os.path.join(LOGS, vm['name'] + '.console.log'))]
    if network:
        argv += ['-netdev', 'tap,id=lan,ifname=%s,script=no,downscript=no' % vm['tap'],
                 '-device', 'virtio-net-pci,netdev=lan,mac=' + vm['mac']]
    else:
        argv += ['-nic', 'none']
    if daemonize:
        argv += ['-pidfile', os.path.join(RUN, vm['name'] + '.pid'), '-daemonize']
    return argv


def make_overlay(vm, image):
    overlay = os.path.join(RUN, vm['name'] + '.qcow2')
    run(['qemu-img', 'create', '-q', '-f', 'qcow2', '-b', os.path.join(image, 'base.qcow2'), '-F', 'qcow2', overlay])


def probe_accel(image):
    """kvm if a VM boots to its login prompt with KVM within a short time, else tcg. On some
    nested (paravirtual) /dev/kvm the kernel never gets there. Cached per image."""
    forced = os.environ.get('LNVM_ACCEL')
    if forced in ('kvm', 'tcg'):
        return forced
    cached = os.path.join(image, 'accel')
    if os.path.exists(cached):
        with open(cached, encoding='utf-8') as stream:
            return stream.read().strip()
    result = 'tcg'
    if os.access('/dev/kvm', os.R_OK | os.W_OK):
        vm = {'name': 'probe'}
        make_overlay(vm, image)
        console = os.path.join(LOGS, 'kvm-probe.console.log')
        open(console, 'wb').close()
        argv = netns_exec(qemu_argv(vm, image, 'kvm', 256, network=False, console=console, daemonize=False,
                                    kernel_args=['console=ttyS0', 'rw', 'fsck.mode=skip', 'panic=-1']))
        log('probing KVM (a boot to the login prompt within 30 s, kernel output within 10 s)')
        started = time.monotonic()
        with subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) as qemu:
            try:
                while time.monotonic() - started < 30 and qemu.poll() is None:
                    time.sleep(1)
                    with open(console, 'rb') as stream:
                        output = stream.read()
                    if b' login: ' in output:
                        result = 'kvm'
                        break
                    if not output and time.monotonic() - started > 10:
                        break  # a kernel that boots under KVM prints within a second
            finally:
                qemu.kill()
        os.unlink(os.path.join(RUN, 'probe.qcow2'))
        log('KVM %s (%.0f s)' % ('works' if result == 'kvm' else 'does not boot the image: TCG', time.monotonic() - started))
    with open(cached, 'w', encoding='utf-8') as stream:
        stream.write(result + '\n')
    return result


def netns_exists():
    return os.path.exists(os.path.join('/run/netns', NETNS))


def ssh_argv(image, address, command):
    return netns_exec(['ssh'] + SSH_OPTIONS + ['-o', 'ConnectTimeout=5', '-i', os.path.join(image, 'id_ed25519'),
                                               '%s@%s' % (USER, address)] + command)


def qemu_pid(name):
    """The pid of the VM's qemu, if it runs (checked against its command line)."""
    try:
        with open(os.path.join(RUN, name + '.pid'), encoding='ascii') as stream:
            pid = int(stream.read().strip())
        with open('/proc/%d/cmdline' % pid, 'rb') as stream:
            cmdline = stream.read().split(b'\0')
    except (OSError, ValueError):
        return None
    return pid if b'lnvm-' + name.encode() in cmdline else None


def up(args):
    vms = parse_vms(args.vm or DEFAULT_VMS)
    lan = ipaddress.ip_interface(args.lan)
    for vm in vms:
        if ipaddress.ip_interface(vm['cidr']).network != lan.network:
            raise SystemExit('lnvm: %s is not in the LAN %s' % (vm['cidr'], lan.network))
        vm['gateway'] = str(lan.ip)
    if netns_exists() or glob.glob(os.path.join(RUN, '*')):
        raise SystemExit('lnvm: %s or %s exists; run "lnvm.py down" first' % (NETNS, RUN))
    started = time.monotonic()
    built = not image_ready(image_dir())
    image = build()
    build_seconds = time.monotonic() - started
    try:
        state = start(vms, lan, image, args)
    except BaseException:
        log('up failed: stopping what it started (consoles stay in %s)' % LOGS)
        down(args)
        raise
    state.update(image_built=built, image_seconds=round(build_seconds, 1))
    with open(os.path.join(RUN, 'state.json'), 'w', encoding='utf-8') as stream:
        json.dump(state, stream, indent=2)
    if args.json:
        print(json.dumps(state))
    return 0


def start(vms, lan, image, args):
    """Create NETNS with the LAN, boot the VMs, wait for SSH; return the state."""
    os.makedirs(RUN, exist_ok=True)
    os.makedirs(LOGS, exist_ok=True)
    # The VMs' LAN: a bridge with the controller's address and a tap per VM, all inside NETNS.
    run(['ip', 'netns', 'add', NETNS])
    run(['ip', '-n', NETNS, 'link', 'set', 'lo', 'up'])
    run(['ip', '-n', NETNS, 'link', 'add', BRIDGE, 'type', 'bridge', 'forward_delay', '0'])
    run(['ip', '-n', NETNS, 'address', 'add', str(lan), 'dev', BRIDGE])
    run(['ip', '-n', NETNS, 'link', 'set', BRIDGE, 'up'])
    for vm in vms:
        run(['ip', '-n', NETNS, 'tuntap', 'add', 'dev', vm['tap'], 'mode', 'tap'])
        run(['ip', '-n', NETNS, 'link', 'set', vm['tap'], 'master', BRIDGE, 'up'])
    accel = probe_accel(image)
    for vm in vms:
        make_overlay(vm, image)
    boot_started = time.monotonic()
    for vm in vms:
        run(netns_exec(qemu_argv(vm, image, accel, args.memory)))
        log('%s started (%s, %s)' % (vm['name'], accel, vm['cidr']))
    pending = list(vms)
    while pending:
        if time.monotonic() - boot_started > args.timeout:
            raise SystemExit('lnvm: no SSH on %s after %d s (console: %s)' % (
                ', '.join(vm['name'] for vm in pending), args.timeout, LOGS))
        for vm in list(pending):
            if qemu_pid(vm['name']) is None:
                raise SystemExit('lnvm: the qemu of %s exited (console: %s)' % (
                    vm['name'], os.path.join(LOGS, vm['name'] + '.console.log')))
            if run(ssh_argv(image, vm['address'], ['true']), check=False, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL).returncode == 0:
                vm['boot_seconds'] = round(time.monotonic() - boot_started, 1)
                log('%s accepts SSH after %.0f s' % (vm['name'], vm['boot_seconds']))
                pending.remove(vm)
        time.sleep(1)
    return {'netns': NETNS, 'bridge': BRIDGE, 'lan': str(lan), 'accel': accel, 'image': image, 'user': USER,
            'identity_file': os.path.join(image, 'id_ed25519'),
            'vms': [{key: vm[key] for key in ('name', 'address', 'cidr', 'mac', 'boot_seconds')} for vm in vms]}


def leftovers():
    """What of ours still exists: the namespace, qemu processes of ours, files in RUN."""
    left = []
    if netns_exists():
        left.append('namespace ' + NETNS)
    mine = run(['pgrep', '-f', '^qemu-system-x86_64 -name lnvm-'], check=False, stdout=subprocess.PIPE,
               universal_newlines=True).stdout.split()
    left += ['qemu pid ' + pid for pid in mine]
    left += glob.glob(os.path.join(RUN, '*'))
    return left


def down(args):
    del args
    pids = set()
    for pidfile in glob.glob(os.path.join(RUN, '*.pid')):
        pid = qemu_pid(os.path.basename(pidfile)[:-len('.pid')])
        if pid:
            pids.add(pid)
    if netns_exists():
        # every process in the namespace was started by up (qemu, or a relay of the controller)
        found = run(['ip', 'netns', 'pids', NETNS], check=False, stdout=subprocess.PIPE,
                    universal_newlines=True).stdout.split()
        pids.update(int(pid) for pid in found)
    for pid in sorted(pids):
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + 10
    while pids and time.monotonic() < deadline:
        pids = {pid for pid in pids if os.path.exists('/proc/%d' % pid)}
        time.sleep(0.2)
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    if netns_exists():
        run(['ip', 'netns', 'delete', NETNS])  # takes the bridge and the taps with it
    shutil.rmtree(RUN, ignore_errors=True)
    time.sleep(0.2)
    left = leftovers()
    if left:
        raise SystemExit('lnvm: left after down: %s' % ', '.join(left))
    log('down: no VM, overlay or namespace left')
    return 0


def status(args):
    del args
    state_file = os.path.join(RUN, 'state.json')
    if os.path.exists(state_file):
        with open(state_file, encoding='utf-8') as stream:
            state = json.load(stream)
        for vm in state['vms']:
            vm['pid'] = qemu_pid(vm['name'])
        print(json.dumps(state, indent=2))
    left = leftovers()
    print('running: %s' % (', '.join(left) if left else 'nothing'))
    return 0


def ssh(args):
    with open(os.path.join(RUN, 'state.json'), encoding='utf-8') as stream:
        state = json.load(stream)
    address = {vm['name']: vm['address'] for vm in state['vms']}[args.name]
    argv = ssh_argv(state['image'], address, args.command)
    os.execvp(argv[0], argv)


def relay(args):
    """Copy stdin to HOST:PORT and HOST:PORT to stdout until both directions end."""
    sock = socket.create_connection((args.host, args.port), timeout=10)
    sock.settimeout(None)
    selector = selectors.DefaultSelector()
    selector.register(0, selectors.EVENT_READ, 'stdin')
    selector.register(sock, selectors.EVENT_READ, 'socket')
    open_directions = 2
    while open_directions:
        for key, dummy in selector.select():
            if key.data == 'stdin':
                data = os.read(0, 65536)
                if data:
                    sock.sendall(data)
                else:
                    selector.unregister(0)
                    sock.shutdown(socket.SHUT_WR)
                    open_directions -= 1
            else:
                data = sock.recv(65536)
                if data:
                    view = memoryview(data)
                    while view:
                        view = view[os.write(1, view):]
                else:
                    selector.unregister(sock)
                    open_directions -= 1
                    if open_directions:  # the VM closed: nothing more can be answered
                        return 0
    return 0


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest='command', required=True)
    command = commands.add_parser('build', help='build the base image (once)')
    command.add_argument('--force', action='store_true', help='build again even if the cache is valid')
    command.set_defaults(func=lambda args: print(build(args.force)) or 0)
    command = commands.add_parser('up', help='start the VMs')
    command.add_argument('--vm', action='append', metavar='NAME=ADDRESS/PREFIX',
                         help='a VM (repeat); default: %s' % ' '.join(DEFAULT_VMS))
    command.add_argument('--lan', default=DEFAULT_LAN, help="the controller's address on the VMs' bridge")
    command.add_argument('--memory', type=int, default=256, help='MiB per VM')
    command.add_argument('--timeout', type=int, default=300, help='seconds until every VM accepts SSH')
    command.add_argument('--json', action='store_true', help='print the state as JSON on stdout')
    command.set_defaults(func=up)
    commands.add_parser('down', help='stop everything').set_defaults(func=down)
    commands.add_parser('status', help='what runs').set_defaults(func=status)
    command = commands.add_parser('ssh', help='log in to a VM')
    command.add_argument('name')
    command.add_argument('command', nargs='*')
    command.set_defaults(func=ssh)
    command = commands.add_parser('relay', help='ProxyCommand: stdin/stdout <-> HOST:PORT')
    command.add_argument('host')
    command.add_argument('port', type=int)
    command.set_defaults(func=relay)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == '__main__':
    sys.exit(main())
