#!/usr/bin/env bash
# Several tfns_accuracy.py runs side by side on one machine (a GPU host), then the tables (quality_table.py).
#
#   some-job-list | bash build/bench/side_by_side.sh LOG_DIR
#
# Each input line is one run: its tag, then tfns_accuracy.py's arguments (split on spaces; no quoting), e.g.
#   gpu-p20 --recipe build/recipes/smollm2-135m-fingpt.yaml --dev-only --set prune.ratio=0.2
# Each run gets 2 CPU threads (OMP_NUM_THREADS) and its log LOG_DIR/TAG.log. Exit status: the runs that failed.
# pruning_cost_gpu.sh and seeds_gpu.sh are the job lists in use.
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-python3}
logs=${1:?usage: JOBS | side_by_side.sh LOG_DIR}
mkdir -p "$logs"
pids=()
set -f  # the arguments split on spaces but are never globbed (a --set value may hold [ ] or *)
while read -r tag args; do
  [ -n "$tag" ] || continue
  case $tag in *[!A-Za-z0-9._-]*) echo "bad tag: $tag" >&2; exit 2;; esac
  # shellcheck disable=SC2086  # the arguments are meant to split on spaces
  OMP_NUM_THREADS=2 "$PY" build/bench/tfns_accuracy.py --tag "$tag" $args > "$logs/$tag.log" 2>&1 &
  pids+=($!)
done
set +f
failed=0
for pid in "${pids[@]}"; do wait "$pid" || failed=$((failed + 1)); done
grep -h "dev split" "$logs"/*.log || true
"$PY" build/bench/quality_table.py > /dev/null
echo "runs failed: $failed of ${#pids[@]} (logs in $logs)"
exit "$failed"
