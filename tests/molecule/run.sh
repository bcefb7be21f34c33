#!/usr/bin/env bash
# The molecule scenarios (default, multi, nodeport, shared-snat, or those named as arguments),
# from the repository, against the collection in .build/collections (no Galaxy). Exits non-zero
# when a scenario fails; molecule destroys the instances (namespaces) after a failure as well.
set -euo pipefail
cd "$(dirname "$0")/../.."
export PATH="$PWD/.venv/bin:$PATH"
export ANSIBLE_COLLECTIONS_PATH="$PWD/.build/collections"
export ANSIBLE_FORCE_COLOR="${ANSIBLE_FORCE_COLOR:-0}"
scenarios=("$@")
[ ${#scenarios[@]} -gt 0 ] || scenarios=(default multi nodeport shared-snat)
status=0
for scenario in "${scenarios[@]}"; do
  echo "=== molecule test -s $scenario"
  start=$SECONDS
  # the scenario's ephemeral state (inventory, instance config, snapshots) stays in the tree
  if MOLECULE_EPHEMERAL_DIRECTORY="$PWD/tests/output/molecule/$scenario" \
     molecule test -s "$scenario" --destroy always; then
    echo "=== $scenario passed in $((SECONDS - start)) s"
  else
    echo "=== $scenario FAILED after $((SECONDS - start)) s"
    status=1
  fi
done
exit $status
