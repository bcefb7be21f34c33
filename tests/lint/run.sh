#!/usr/bin/env bash
# ansible-lint (production profile, see .ansible-lint) on the role, the playbooks and the
# molecule scenarios. Exits non-zero on any violation.
set -euo pipefail
cd "$(dirname "$0")/../.."
export PATH="$PWD/.venv/bin:$PATH"
export ANSIBLE_COLLECTIONS_PATH="$PWD/.build/collections"
export ANSIBLE_CONFIG="$PWD/ansible.cfg"
exec ansible-lint --profile production --strict \
  roles/netns_nat site.yml lab/up.yml lab/down.yml molecule
