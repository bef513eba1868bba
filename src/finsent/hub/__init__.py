"""Hub: the model card, ``finsent push`` (one tagged commit) and the Space deploy.

May import the stages (build, evaluation, speed, export, corpus) and ``finsent.core``.
"""
