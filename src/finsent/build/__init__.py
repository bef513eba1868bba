"""Build: prune (importance, vocabulary trimming), fine-tune (data, dev split, trainer, distributed launch), merge.

May import ``finsent.core`` only.
"""

import os

# oneDNN (PyTorch's CPU bf16 matmuls) keeps a compiled primitive for each matrix shape it has met, 1,024 of them by
# default. A training meets new shapes at every batch (rows x padded length), so the process grew with the run:
# the direct recipe's steps rose from 3,673 to 4,146 MiB in 30 steps and reached 7,015 MiB by the run's end. With
# 16 they stay flat at 3,597 MiB, at the same speed and with the same losses (build/README.md, "Memory and time").
# A forward pass meets about eight shapes and repeats them in every layer, so inference keeps its hits (finsent eval,
# 400 TFNS tweets, embedded release, turns of each: 18.96 and 18.63 items/s against 18.99 and 18.38 with 1,024). oneDNN
# reads the variable once, when it first builds a primitive: set here, before any training computes; a value the
# user set wins.
os.environ.setdefault("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "16")
