# SPDX-License-Identifier: GPL-3.0-or-later
"""Static proof that no code path of the collection hands user input to a shell (issue 6).

Every Python file under plugins/ is parsed and every process start is checked:
- no os.system, os.popen, subprocess.getoutput/getstatusoutput or commands.* at all;
- no shell=True (subprocess) and no use_unsafe_shell=True (AnsibleModule.run_command);
- the command given to run_command and to subprocess.Popen/run/call/check_call/check_output
  is never a string built in the code (literal, f-string, %, +, .format(), .join()), neither
  directly nor through a local variable assigned such a string;
- an argv that runs a shell with ``-c`` passes a fixed module-level script, never a
  composed one. The only exception is the connection plugin's ``_command_argv``: Ansible
  itself hands a connection plugin a command line (its module wrapper) to run with the
  configured shell, exactly as ansible.builtin.local does; no task input is part of it.
The role's tasks are checked too: no shell, raw or script module, and no command whose
free-form string or ``cmd`` contains a template.

The checker itself is tested on small snippets, so that a checker that flags nothing
cannot pass silently."""
import ast
import os

import pytest
import yaml

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PLUGINS = os.path.join(REPO, 'plugins')
ROLES = os.path.join(REPO, 'roles')

FORBIDDEN_CALLS = {
    ('os', 'system'), ('os', 'popen'), ('subprocess', 'getoutput'), ('subprocess', 'getstatusoutput'),
    ('commands', 'getoutput'), ('commands', 'getstatusoutput'), ('pty', 'spawn'),
}
SUBPROCESS_STARTERS = {'Popen', 'run', 'call', 'check_call', 'check_output'}
SHELLS = {'sh', 'bash', 'dash', 'zsh', 'ksh'}
# (file relative to the repository, function): why a composed shell command is legitimate there.
ALLOWED_SHELL_COMMANDS = {
    ('plugins/connection/netns.py', '_command_argv'):
        'a connection plugin runs the command line Ansible gives it with the configured shell',
}


def python_files(root):
    for directory, dummy, files in os.walk(root):
        for name in sorted(files):
            if name.endswith('.py'):
                yield os.path.join(directory, name)


def dotted(node):
    """'a.b.c' for Name/Attribute chains, else None."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
        return '.'.join(reversed(parts))
    return None


def builds_string(node):
    """Whether the expression composes or is a string (as opposed to an argv list)."""
    if isinstance(node, ast.Constant):
        return isinstance(node.value, (str, bytes))
    if isinstance(node, ast.JoinedStr):
        return True
    if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Mod, ast.Add)):
        if isinstance(node.op, ast.Mod) and isinstance(node.left, (ast.Constant, ast.JoinedStr)):
            return True
        return builds_string(node.left) or builds_string(node.right)
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in ('format', 'join'):
        return True
    return False


def truthy_keyword(call, name):
    for keyword in call.keywords:
        if keyword.arg == name:
            return not (isinstance(keyword.value, ast.Constant) and keyword.value.value in (False, None))
    return False


def command_argument(call):
    if call.args:
        return call.args[0]
    for keyword in call.keywords:
        if keyword.arg in ('args', 'argv', 'cmd'):
            return keyword.value
    return None


class Checker(ast.NodeVisitor):
    def __init__(self, path, source):
        self.path = path
        self.problems = []
        self.tree = ast.parse(source, path)
        self.functions = []
        self.constants = set()
        for node in self.tree.body:
            if isinstance(node, ast.Assign) and all(isinstance(t, ast.Name) for t in node.targets) \
                    and _constant_text(node.value):
                self.constants.update(t.id for t in node.targets)

    def run(self):
        self.visit(self.tree)
        return self.problems

    def report(self, node, what):
        self.problems.append('%s:%d: %s' % (self.path, node.lineno, what))

    def visit_FunctionDef(self, node):
        self.functions.append(node)
        self.generic_visit(node)
        self.functions.pop()

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_Call(self, node):
        name = dotted(node.func) or ''
        parts = tuple(name.split('.'))
        if parts[-2:] in FORBIDDEN_CALLS:
            self.report(node, '%s runs a shell' % name)
        if truthy_keyword(node, 'shell'):
            self.report(node, '%s(shell=...) runs a shell' % name)
        if truthy_keyword(node, 'use_unsafe_shell'):
            self.report(node, '%s(use_unsafe_shell=...) runs a shell' % name)
        is_starter = parts[-1:] == ('run_command',) or (
            parts[-1] in SUBPROCESS_STARTERS and (len(parts) == 1 or parts[-2] == 'subprocess'))
        if is_starter:
            command = command_argument(node)
            if command is not None and self._is_string_command(command):
                self.report(node, '%s is given a command string, not an argv list' % name)
        self.generic_visit(node)

    def visit_List(self, node):
        self._check_shell_argv(node)
        self.generic_visit(node)

    visit_Tuple = visit_List

    def _is_string_command(self, node):
        if builds_string(node):
            return True
        if isinstance(node, ast.Name) and self.functions:
            for assigned in self._assignments(node.id):
                if builds_string(assigned):
                    return True
        return False

    def _assignments(self, name):
        for sub in ast.walk(self.functions[-1]):
            if isinstance(sub, ast.Assign) and any(isinstance(t, ast.Name) and t.id == name for t in sub.targets):
                yield sub.value

    def _check_shell_argv(self, node):
        items = node.elts
        for index, item in enumerate(items[:-1]):
            if not (isinstance(item, ast.Constant) and item.value == '-c') or index == 0:
                continue
            program = items[index - 1]
            if isinstance(program, ast.Constant) and os.path.basename(str(program.value)) not in SHELLS:
                continue  # '-c' of another tool, not a shell
            script = items[index + 1]
            if isinstance(script, ast.Name) and script.id in self.constants:
                continue
            function = self.functions[-1].name if self.functions else None
            if (os.path.relpath(self.path, REPO), function) in ALLOWED_SHELL_COMMANDS:
                continue
            self.report(node, 'a shell -c is given a script that is not a fixed module-level constant')


def _constant_text(node):
    if isinstance(node, ast.Constant):
        return isinstance(node.value, str)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        return _constant_text(node.left) and _constant_text(node.right)
    return False


def check_source(source, path='<snippet>'):
    return Checker(path, source).run()


# --- the checker on snippets ----------------------------------------------------------------

BAD_SNIPPETS = {
    'os.system': 'import os\nos.system("ip netns add " + name)\n',
    'os.popen': 'import os\nos.popen(cmd)\n',
    'getoutput': 'import subprocess\nsubprocess.getoutput("ls")\n',
    'shell=True': 'import subprocess\nsubprocess.run(argv, shell=True)\n',
    'shell=variable': 'import subprocess\nsubprocess.Popen(argv, shell=flag)\n',
    'use_unsafe_shell': 'def f(module, argv):\n    module.run_command(argv, use_unsafe_shell=True)\n',
    'percent-string': 'def f(module, name):\n    module.run_command("ip netns add %s" % name)\n',
    'f-string': 'def f(module, name):\n    module.run_command(f"ip link del {name}")\n',
    'format': 'def f(module, name):\n    module.run_command("nft add table {}".format(name))\n',
    'join': 'def f(module, argv):\n    module.run_command(" ".join(argv))\n',
    'string-through-variable': 'def f(module, name):\n    cmd = "iptables -A " + name\n    module.run_command(cmd)\n',
    'subprocess-string': 'import subprocess\ndef f(name):\n    subprocess.check_output("ping " + name)\n',
    'composed-shell-script': 'def f(name):\n    return ["/bin/sh", "-c", "ip netns add " + name]\n',
    'shell-script-from-variable': 'def f(script):\n    return ["bash", "-c", script]\n',
}

GOOD_SNIPPETS = {
    'argv-list': 'def f(module, name):\n    module.run_command(["ip", "netns", "add", name])\n',
    'argv-variable': 'def f(module, name):\n    argv = ["ip", "link", "del", name]\n    module.run_command(argv)\n',
    'fixed-shell-script': 'SCRIPT = "exec \\"$@\\""\ndef f(argv):\n    return ["/bin/sh", "-c", SCRIPT, "x"] + argv\n',
    'other-tool-dash-c': 'def f(module):\n    module.run_command(["nft", "-c", "-f", "-"])\n',
    'shell-false': 'import subprocess\nsubprocess.run(["ls"], shell=False)\n',
}


@pytest.mark.parametrize('snippet', sorted(BAD_SNIPPETS))
def test_checker_flags_shell_use(snippet):
    assert check_source(BAD_SNIPPETS[snippet]), snippet


@pytest.mark.parametrize('snippet', sorted(GOOD_SNIPPETS))
def test_checker_accepts_argv_lists(snippet):
    assert check_source(GOOD_SNIPPETS[snippet]) == []


# --- the collection ---------------------------------------------------------------------------

def test_plugins_never_build_a_shell_command():
    files = list(python_files(PLUGINS))
    assert len(files) >= 10, files  # modules, module_utils, connection, doc fragments
    problems = []
    for path in files:
        with open(path) as handle:
            problems.extend(check_source(handle.read(), path))
    assert problems == []


def test_the_allowed_shell_command_still_exists():
    """The exception must name real code; if the function goes away, drop the exception."""
    for (relative, function) in ALLOWED_SHELL_COMMANDS:
        with open(os.path.join(REPO, relative)) as handle:
            tree = ast.parse(handle.read())
        assert function in [node.name for node in ast.walk(tree) if isinstance(node, ast.FunctionDef)]


def role_tasks(node):
    """Every task dict in a parsed tasks file, blocks included."""
    if isinstance(node, list):
        for item in node:
            yield from role_tasks(item)
    elif isinstance(node, dict):
        yield node
        for key in ('block', 'rescue', 'always'):
            if key in node:
                yield from role_tasks(node[key])


SHELL_MODULES = {'shell', 'ansible.builtin.shell', 'ansible.legacy.shell', 'raw', 'ansible.builtin.raw',
                 'script', 'ansible.builtin.script', 'expect', 'ansible.builtin.expect'}
COMMAND_MODULES = {'command', 'ansible.builtin.command', 'ansible.legacy.command'}


def check_tasks(tasks, path='<tasks>'):
    problems = []
    for task in role_tasks(tasks):
        for module in SHELL_MODULES & set(task):
            problems.append('%s: task %r uses %s' % (path, task.get('name'), module))
        for module in COMMAND_MODULES & set(task):
            args = task[module]
            text = args if isinstance(args, str) else (args or {}).get('cmd', '') if isinstance(args, dict) else ''
            if '{{' in str(text):
                problems.append('%s: task %r builds a command line from a template' % (path, task.get('name')))
    return problems


def test_task_checker_flags_shell_modules_and_templated_command_lines():
    assert check_tasks([{'name': 'a', 'ansible.builtin.shell': 'ip netns add {{ name }}'}])
    assert check_tasks([{'block': [{'name': 'b', 'command': 'ip netns add {{ name }}'}]}])
    assert check_tasks([{'name': 'c', 'ansible.builtin.command': {'cmd': 'ip link del {{ ifname }}'}}])
    assert check_tasks([{'name': 'd', 'ansible.builtin.command': {'argv': ['ip', 'link', 'del', '{{ x }}']}}]) == []


def test_role_tasks_never_run_a_shell():
    files = [os.path.join(directory, name) for directory, dummy, names in os.walk(ROLES)
             for name in names if name.endswith(('.yml', '.yaml')) and os.sep + 'tasks' in directory]
    assert files
    problems = []
    for path in files:
        with open(path) as handle:
            problems.extend(check_tasks(yaml.safe_load(handle) or [], path))
    assert problems == []
