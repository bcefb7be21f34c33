#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-3.0-or-later
# ansible-test sanity for linuxnet.netns at the pinned ansible-core of .venv.
#
# ansible-test needs the collection at a real path ending in
# ansible_collections/linuxnet/netns (it resolves symlinks, so the .build/collections link
# does not do), so this builds a copy of the git-tracked files plus untracked, non-ignored
# ones under .build/sanity/ (a git repository of its own) and runs there.  Extra arguments go to ansible-test, e.g.
#   tests/sanity/run.sh --test validate-modules
# Exit status: non-zero when any sanity test fails.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
VENV=${VENV:-$ROOT/.venv}
PYTHON_VERSION=${SANITY_PYTHON:-3.11}
COPY_PARENT=$ROOT/.build/sanity
COPY=$COPY_PARENT/ansible_collections/linuxnet/netns

ANSIBLE_TEST=$VENV/bin/ansible-test
[ -x "$ANSIBLE_TEST" ] || { echo "sanity: $ANSIBLE_TEST not found; run 'make deps' first" >&2; exit 2; }
export PATH=$VENV/bin:$PATH
export LC_ALL=C.UTF-8
unset ANSIBLE_CONFIG ANSIBLE_COLLECTIONS_PATH  # ansible-test sets up its own

# Files of the collection as git sees them: tracked plus untracked-but-not-ignored, NUL
# separated; tracked files deleted from the work tree are skipped.
collection_files() {
    if git -C "$ROOT" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
        git -C "$ROOT" ls-files -z --cached --others --exclude-standard |
            while IFS= read -r -d '' file; do
                if [ -e "$ROOT/$file" ] || [ -L "$ROOT/$file" ]; then printf '%s\0' "$file"; fi
            done
    else  # not a git checkout (e.g. an unpacked tarball): everything but build output
        (cd "$ROOT" && find . \( -path ./.git -o -path './.venv*' -o -path ./.build -o -path ./tests/output \
            -o -name __pycache__ -o -name .pytest_cache \) -prune -o \( -type f -o -type l \) -print0)
    fi
}

build_copy() {
    # Keep tests/output (ansible-test's per-test virtual environments) between runs.
    local kept=$COPY_PARENT/.tests-output
    rm -rf "$kept"
    if [ -d "$COPY/tests/output" ]; then mv "$COPY/tests/output" "$kept"; fi
    rm -rf "$COPY"
    mkdir -p "$COPY/tests"
    if [ -d "$kept" ]; then mv "$kept" "$COPY/tests/output"; fi
    collection_files | tar -C "$ROOT" --null -T - -cf - | tar -C "$COPY" -xf -
    # ansible-test lists content with git from the nearest .git upwards; without a repository
    # of its own the copy would be seen as ignored build output of the outer checkout.
    git -C "$COPY" init -q
}

# ansible-test bootstraps pip in each sanity venv with a get-pip script it downloads from a
# host that may be unreachable.  The stand-in installs pip from the interpreter's bundled
# wheel (ensurepip) and then runs "pip install" with the arguments ansible-test passes,
# minus the options only get-pip understands.
install_get_pip_stand_in() {
    local version cache
    version=$("$VENV/bin/python" - <<'PY'
import inspect, re
from ansible_test._internal import python_requirements
match = re.search(r"pip\s*=\s*'([0-9.]+)'", inspect.getsource(python_requirements.get_venv_packages))
print(match.group(1) if match else '')
PY
)
    [ -n "$version" ] || { echo "sanity: cannot find the pip version ansible-test bootstraps" >&2; exit 2; }
    cache=$HOME/.ansible/test/cache/get_pip_${version//./_}.py
    mkdir -p "$(dirname "$cache")"
    cat > "$cache.tmp" <<'PY'
# Stand-in for the get-pip bootstrap script of ansible-test, written by
# linuxnet.netns tests/sanity/run.sh: ensurepip, then "pip install" with our arguments.
import subprocess
import sys

GET_PIP_ONLY_OPTIONS = ('--no-setuptools', '--no-wheel', '--no-pip')
ARGS = [arg for arg in sys.argv[1:] if arg not in GET_PIP_ONLY_OPTIONS]
subprocess.check_call([sys.executable, '-m', 'ensurepip', '--upgrade', '--default-pip'])
subprocess.check_call([sys.executable, '-m', 'pip', 'install'] + ARGS)
PY
    mv "$cache.tmp" "$cache"
}

build_copy
install_get_pip_stand_in
cd "$COPY"
echo "sanity: ansible-test $("$ANSIBLE_TEST" --version 2>/dev/null | head -1) in $COPY" >&2
exec "$ANSIBLE_TEST" sanity --venv --requirements --python "$PYTHON_VERSION" --color no "$@"
