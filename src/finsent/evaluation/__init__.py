"""Evaluation: the FinGPT benchmarks, ``finsent eval`` runs, their metric and summary.

May import ``finsent.core`` only.
"""
