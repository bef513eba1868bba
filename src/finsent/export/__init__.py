"""Export: a release as GGUF, ONNX or a ``pipeline()`` folder, and the release's export stage.

May import ``finsent.core`` only.
"""
