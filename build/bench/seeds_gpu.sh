#!/usr/bin/env bash
# The direct recipe built with more training seeds on the one dev split (finetune.dev_seed 42, the split of every
# run so far), side by side on one GPU, then the tables: quality.md's "Builds of one setting" gives each rate's
# mean and spread over seed 42 (the runs already there) and these.
#
#   [RATES="1e-4 2e-4"] [SET="key=value ..."] bash build/bench/seeds_gpu.sh [TAG_PREFIX [SEEDS...]]
#
# Prefix default h200, seeds 43 44 45 46; SET adds --set options to every run, e.g. SET=finetune.average_from=0.5
# (each run then scores its last weights and their mean: a paired comparison per seed). Writes
# build/bench/results/tfns_accuracy-<prefix>-direct-lr<rate>-s<seed>-dev.json, logs in runs/<prefix>-seeds-logs/.
# Timing on an H200 (2026-12-04): eight runs side by side trained in 6.2 min each (2.2 steps/s); ten ran at
# 1.8 steps/s and needed about 8 min of training each, plus a minute to prune and score. On a 15-minute lease
# (about 1 min to start, 2 calls to carry the model there) eight runs fit, ten do not.
set -euo pipefail
cd "$(dirname "$0")/../.."
prefix=${1:-h200}
shift $(($# > 0))
seeds=("$@")
[ ${#seeds[@]} -gt 0 ] || seeds=(43 44 45 46)
read -ra settings <<< "${SET:-}"  # split on spaces, never globbed
read -ra rates <<< "${RATES:-1e-4 2e-4}"
extra=""
for setting in "${settings[@]}"; do extra+=" --set $setting"; done
for rate in "${rates[@]}"; do
  for seed in "${seeds[@]}"; do
    echo "$prefix-direct-lr$rate-s$seed-dev --recipe build/recipes/smollm2-109m-fingpt-direct.yaml --dev-only" \
         "--set finetune.learning_rate=$rate --set finetune.seed=$seed --set finetune.dev_seed=42$extra"
  done
done | bash build/bench/side_by_side.sh "runs/$prefix-seeds-logs"
