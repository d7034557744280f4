#!/usr/bin/env bash
# Runs one bench script on an earlier commit and on this checkout, one right after the
# other on the same machine, so a change can be shown to cost nothing (issue 28's "no
# regression"): the earlier commit is checked out in a worktree under /tmp (kept, with
# its own build, for the next run), each side builds what it needs, and both outputs
# are printed under their commit. Needs root, as the scripts do.
# Usage: bench/before-after.sh REV SCRIPT [ARGS...]   e.g. bench/before-after.sh bc4f0e1 bench/routes.sh
set -euo pipefail
cd "$(dirname "$0")/.."
REV=$1; SCRIPT=$2; shift 2
OLD=$(git rev-parse --short "$REV")
TREE=/tmp/weft-before-$OLD
[ -d "$TREE" ] || git worktree add -q --detach "$TREE" "$OLD"
[ -x "$TREE/$SCRIPT" ] || { echo "$SCRIPT does not exist at $OLD" >&2; exit 1; }
NEW=$(git rev-parse --short HEAD)$(git diff --quiet HEAD || echo "+changes")
for side in before after; do
  if [ $side = before ]; then dir=$TREE; rev=$OLD; else dir=$PWD; rev=$NEW; fi
  echo "=== $SCRIPT $* — $side ($rev), $(date -u +%FT%TZ)"
  (cd "$dir" && "./$SCRIPT" "$@")
done
