# SPDX-License-Identifier: GPL-3.0-or-later
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Stand-in for ``ansible_python_interpreter`` that measures every module process.

bench/run.py writes a small executable script that calls

    python module_python.py --real REAL_PYTHON --log LOG [--profile-dir DIR] -- ARGS...

and sets ansible_python_interpreter to that script. We run REAL_PYTHON with Ansible's
arguments (the AnsiballZ script's path, or the script on stdin when pipelining), wait
for it with wait4(2) and append one JSON line to LOG: the module name, the peak resident
set size of that process (ru_maxrss, which also covers the children it waited for, such
as iptables-restore), the peak of the module's python process alone (VmHWM of
/proc/PID/status, read every SAMPLE_SECONDS while it runs: a process that has exited has no
memory map left to read, so this is the last reading, a lower bound that can only miss
what grew in the last interval) and its wall time. The two agree when the python process
itself is the largest of the tree.

With --profile-dir the module runs under cProfile and its statistics land in
DIR/<module>-<pid>.prof. ``python -m cProfile`` cannot be used: AnsiballZ removes the
directory of ``__main__.__file__`` from sys.path, which would then be the standard
library's. runpy.run_path() gives ``__main__`` the script's own file, as a plain run does.
"""

import argparse
import json
import os
import re
import sys
import tempfile
import time

SCRIPT_MODULE = re.compile(r'AnsiballZ_([A-Za-z0-9_]+)\.py$')
PAYLOAD_MODULE = re.compile(rb"^module_fqn='([A-Za-z0-9_.]+)',", re.MULTILINE)
SAMPLE_SECONDS = 0.01


def parse():
    parser = argparse.ArgumentParser()
    parser.add_argument('--real')
    parser.add_argument('--log')
    parser.add_argument('--profile-dir')
    parser.add_argument('--profiled-child', metavar='OUT', help=argparse.SUPPRESS)
    parser.add_argument('rest', nargs=argparse.REMAINDER)
    args = parser.parse_args()
    if args.rest and args.rest[0] == '--':
        args.rest = args.rest[1:]
    return args


def module_name(script_path):
    match = SCRIPT_MODULE.search(script_path)
    if match:
        return match.group(1)
    with open(script_path, 'rb') as handle:
        match = PAYLOAD_MODULE.search(handle.read())
    return match.group(1).decode().rsplit('.', 1)[-1] if match else 'unknown'


def script_from_stdin():
    """Pipelining sends the AnsiballZ script on stdin; a file lets us name and profile it."""
    handle = tempfile.NamedTemporaryFile(prefix='lnb-pipelined-', suffix='.py', delete=False)
    handle.write(sys.stdin.buffer.read())
    handle.close()
    return handle.name


def run_profiled(out, argv):
    """Child mode: run the AnsiballZ script in this process under cProfile."""
    import cProfile
    import runpy
    here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or '.') != here]
    sys.argv = list(argv)
    profiler = cProfile.Profile()
    try:
        profiler.runcall(runpy.run_path, argv[0], run_name='__main__')
    finally:
        profiler.dump_stats(out)


def high_water_kb(pid):
    """VmHWM of a running process in kB (None once it has exited)."""
    try:
        with open('/proc/%d/status' % pid) as handle:
            for line in handle:
                if line.startswith('VmHWM:'):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return None


def wait_sampling(pid):
    """wait4() the child; meanwhile read its VmHWM. Returns (status, rusage, VmHWM kB)."""
    hwm = 0
    while True:
        done, status, usage = os.wait4(pid, os.WNOHANG)
        if done:
            return status, usage, hwm
        reading = high_water_kb(pid)
        if reading:
            hwm = max(hwm, reading)
        time.sleep(SAMPLE_SECONDS)


def measure(args):
    argv = list(args.rest)
    scripts = [a for a in argv if not a.startswith('-')]
    stdin_script = None
    if not scripts:
        stdin_script = script_from_stdin()
        argv.append(stdin_script)
        scripts = [stdin_script]
    name = module_name(scripts[0])
    if args.profile_dir:
        os.makedirs(args.profile_dir, exist_ok=True)
        out = os.path.join(args.profile_dir, '%s-%d.prof' % (name, os.getpid()))
        options = [a for a in argv if a.startswith('-')]
        argv = options + [os.path.abspath(__file__), '--profiled-child', out, '--'] + scripts
    started = time.monotonic()
    pid = os.fork()
    if pid == 0:
        try:
            os.execv(args.real, [args.real] + argv)
        finally:
            os._exit(127)
    status, usage, hwm = wait_sampling(pid)
    seconds = time.monotonic() - started
    if stdin_script:
        os.unlink(stdin_script)
    code = os.waitstatus_to_exitcode(status)
    with open(args.log, 'a') as handle:
        handle.write(json.dumps({
            'module': name,
            'maxrss_kb': usage.ru_maxrss,
            'vmhwm_kb': hwm,
            'seconds': round(seconds, 4),
            'status': code,
        }) + '\n')
    return code


def main():
    args = parse()
    if args.profiled_child:
        run_profiled(args.profiled_child, args.rest)
        return 0
    return measure(args)


if __name__ == '__main__':
    sys.exit(main())
