#!/usr/bin/env bash
# The direct recipe's two learning rates (1e-4, 2e-4), each built with more training seeds on the one dev split
# (finetune.dev_seed 42, the split of every run so far), side by side on one GPU, then the tables: quality.md's
# "Builds of one setting" then gives each rate's mean and spread over seeds 42 (the runs already there) + these.
# A dev gap of 0.4 point (2e-4 over 1e-4 on seed 42) is under one standard error of the split (0.85 point); the
# seeds say whether it is the rate or the draw.
#
#   bash build/bench/seeds_gpu.sh [TAG_PREFIX [SEEDS...]]   # prefix default h200, seeds 43 44 45 46
#
# Writes build/bench/results/tfns_accuracy-<prefix>-direct-lr<rate>-s<seed>-dev.json, logs in
# runs/<prefix>-seeds-logs/. Eight full fine-tunings of this recipe shared an H200 in 6.2 min each (2026-12-04).
set -euo pipefail
cd "$(dirname "$0")/../.."
prefix=${1:-h200}
shift $(($# > 0))
seeds=("$@")
[ ${#seeds[@]} -gt 0 ] || seeds=(43 44 45 46)
for rate in 1e-4 2e-4; do
  for seed in "${seeds[@]}"; do
    echo "$prefix-direct-lr$rate-s$seed-dev --recipe build/recipes/smollm2-109m-fingpt-direct.yaml --dev-only" \
         "--set finetune.learning_rate=$rate --set finetune.seed=$seed --set finetune.dev_seed=42"
  done
done | bash build/bench/side_by_side.sh "runs/$prefix-seeds-logs"
