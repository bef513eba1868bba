"""llama-finsent: build, evaluate, publish and demo Llama-FinSent-S, a pruned financial-sentiment LLM.

    from finsent import FinSentClassifier
    clf = FinSentClassifier.from_pretrained("oopere/Llama-FinSent-S")   # or a folder, or "smollm2"
    clf.classify(["Acme beats estimates"], scheme="3")[0].label
"""

__version__ = "0.1.0"

from .classify import FinSentClassifier, Prediction  # noqa: E402
from .labels import SCHEMES, LabelError, to_coarse  # noqa: E402
from .models import ModelNotAvailableError  # noqa: E402
from .prompts import InputError  # noqa: E402

__all__ = [
    "FinSentClassifier", "Prediction", "SCHEMES", "LabelError", "to_coarse",
    "ModelNotAvailableError", "InputError", "__version__",
]
