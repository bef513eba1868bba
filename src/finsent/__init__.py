"""llama-finsent: build, evaluate, publish and demo Llama-FinSent-S, a pruned financial-sentiment LLM.

    from finsent import FinSentClassifier
    clf = FinSentClassifier.from_pretrained("oopere/Llama-FinSent-S")   # or a folder, or "smollm2"
    clf.classify(["Acme beats estimates"], scheme="3")[0].label
"""

from finsent.core import __version__
from finsent.core.classify import FinSentClassifier, Prediction
from finsent.core.labels import SCHEMES, LabelError, to_coarse
from finsent.core.models import ModelNotAvailableError
from finsent.core.prompts import InputError

__all__ = [
    "FinSentClassifier", "Prediction", "SCHEMES", "LabelError", "to_coarse",
    "ModelNotAvailableError", "InputError", "__version__",
]
