# SPDX-License-Identifier: GPL-3.0-or-later
"""No function, class or method in plugins/ is defined but never used by the collection's
own code (tests do not count: code only tests call is dead in the product). A name counts
as used when it appears in the code of plugins/ (not in a comment or string) or in roles/
other than at its own definition; ALLOWED lists what Ansible or Python call by convention."""
import ast
import os
import re
import tokenize

from tests.support.paths import REPO_ROOT

PLUGINS = os.path.join(REPO_ROOT, 'plugins')
# Called by Ansible or Python by name, never by our code.
ALLOWED = {
    'main',  # module entry points
    'ModuleDocFragment',  # doc fragment protocol
    'FilterModule', 'filters',  # filter plugin protocol
    'Connection', 'exec_command', 'put_file', 'fetch_file', 'close', '_connect', 'reset',  # connection plugin
    '__init__', '__repr__', '__str__', '__enter__', '__exit__', '__iter__', '__len__',
}


def used_names():
    """{name: [(path, line)]} of every identifier in the code of plugins/ (Python NAME tokens:
    comments and strings do not count) and every word of roles/ and plugins/ YAML."""
    found = {}
    for top in ('plugins', 'roles'):
        for root, dummy, files in os.walk(os.path.join(REPO_ROOT, top)):
            for name in files:
                path = os.path.join(root, name)
                if name.endswith('.py'):
                    with open(path, 'rb') as handle:
                        for token in tokenize.tokenize(handle.readline):
                            if token.type == tokenize.NAME:
                                found.setdefault(token.string, []).append((path, token.start[0]))
                elif name.endswith(('.yml', '.yaml')):
                    with open(path) as handle:
                        for number, line in enumerate(handle, 1):
                            for word in re.findall(r'[A-Za-z_][A-Za-z0-9_]*', line):
                                found.setdefault(word, []).append((path, number))
    return found


def definitions():
    """(path, line, name) of every function, class and method under plugins/."""
    result = []
    for root, dummy, files in os.walk(PLUGINS):
        for name in sorted(files):
            if not name.endswith('.py'):
                continue
            path = os.path.join(root, name)
            with open(path) as handle:
                tree = ast.parse(handle.read())
            for node in ast.walk(tree):
                if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
                    result.append((path, node.lineno, node.name))
    return result


def test_every_definition_is_used_by_the_collection():
    names = used_names()
    unused = []
    for path, line, name in definitions():
        if name in ALLOWED:
            continue
        if not [use for use in names.get(name, []) if use != (path, line)]:
            unused.append('%s:%d %s' % (os.path.relpath(path, REPO_ROOT), line, name))
    assert unused == [], 'defined but never used by the collection:\n' + '\n'.join(unused)
