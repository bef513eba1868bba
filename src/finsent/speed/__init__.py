"""Speed: ``finsent bench`` and ``bench-quality``, the compute floor, scorer variants and their report.

May import ``finsent.core`` only.
"""
