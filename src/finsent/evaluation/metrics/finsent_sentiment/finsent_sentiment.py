"""``finsent_sentiment``: the project's `evaluate` metric for sentiment labels, shipped inside the package.

Hub metric scripts (``evaluate.load("accuracy")``) cannot load offline, so this module is loaded from
its folder: ``evaluate.load(str(finsent.evaluation.metrics.METRIC_DIR))``
(``finsent.evaluation.metrics.load_metric()``).

Inputs are label strings; a prediction of ``""`` (or ``None``, unless every prediction is ``None``,
which `evaluate`'s Arrow type check rejects) is an unparseable generated answer.
It is counted wrong: it lowers accuracy and the recall of its true class, and is a false positive
for no class. It is never mapped to neutral (FinGPT's parser does that silently).

Averages follow scikit-learn's default label set, as FinGPT's scoring does: the classes present in
the references or in the parseable predictions. ``per_class`` and ``confusion_matrix`` always cover
every label of ``labels`` (the scheme, in its order), so tables have the same rows run after run.
"""

from __future__ import annotations

import datasets
import evaluate
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support

_DESCRIPTION = __doc__
_KWARGS_DESCRIPTION = """
Args:
    predictions (list of str | None): predicted labels; "" (or None) = unparseable answer.
    references (list of str): gold labels.
    labels (list of str, optional): the label scheme in display order; default: sorted labels seen.
Returns:
    accuracy, macro_f1, weighted_f1 (floats), per_class ({label: {precision, recall, f1, support}}),
    labels (list), confusion_matrix (rows = gold, columns = predicted, over ``labels``),
    unparseable (int), unparseable_by_label ({gold label: count}).
Examples:
    >>> metric = evaluate.load("src/finsent/metrics/finsent_sentiment")  # doctest: +SKIP
    >>> metric.compute(predictions=["positive", None], references=["positive", "negative"],
    ...                labels=["negative", "neutral", "positive"])["accuracy"]  # doctest: +SKIP
    0.5
"""
_CITATION = "scikit-learn: Pedregosa et al., JMLR 12, pp. 2825-2830, 2011."

# Stands in for an unparseable answer inside scikit-learn: never a label of any scheme.
UNPARSEABLE = "<unparseable>"


class FinsentSentiment(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features({
                "predictions": datasets.Value("string"),
                "references": datasets.Value("string"),
            }),
            reference_urls=["https://scikit-learn.org/stable/modules/model_evaluation.html"],
        )

    def _compute(self, predictions, references, labels=None):
        if not references:
            raise ValueError("finsent_sentiment: no predictions to score")
        preds = [p if p else UNPARSEABLE for p in predictions]
        refs = list(references)
        seen = set(refs) | {p for p in preds if p != UNPARSEABLE}
        if labels is None:
            labels = sorted(seen)
        labels = list(labels)
        unknown = sorted(seen - set(labels))
        if unknown:
            raise ValueError(f"finsent_sentiment: label(s) {unknown} are not in labels={labels}")
        present = [label for label in labels if label in seen]  # scikit-learn's default label set

        precision, recall, f1, support = precision_recall_fscore_support(
            refs, preds, labels=labels, zero_division=0
        )
        per_class = {
            label: {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
            for label, p, r, f, s in zip(labels, precision, recall, f1, support)
        }
        matrix = confusion_matrix(refs, preds, labels=labels)  # unparseable rows fall outside it
        by_label = {label: 0 for label in labels}
        for ref, pred in zip(refs, preds):
            if pred == UNPARSEABLE:
                by_label[ref] += 1
        return {
            "accuracy": float(accuracy_score(refs, preds)),
            "macro_f1": float(f1_score(refs, preds, labels=present, average="macro", zero_division=0)),
            "weighted_f1": float(f1_score(refs, preds, labels=present, average="weighted", zero_division=0)),
            "per_class": per_class,
            "labels": labels,
            "confusion_matrix": matrix.tolist(),
            "unparseable": sum(by_label.values()),
            "unparseable_by_label": by_label,
        }
