"""Corpus classification, file to file: ``finsent classify --input X --output Y`` on the local or the Ray engine.

May import ``finsent.core`` only.
"""
