"""The inference core: what the Space ships and every other stage builds on.

Labels, prompts, the classifier and its scoring helpers (precision, quant), model loading, tables (the one
reader of CSV / JSON lines / parquet), reports, output folders, provenance, recipes and the error family.
It imports nothing else of finsent; the Space copies this folder whole.
"""

__version__ = "0.1.0"
