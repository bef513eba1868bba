"""Build: prune (importance, vocabulary trimming), fine-tune (data, dev split, trainer, distributed launch), merge.

May import ``finsent.core`` only.
"""
