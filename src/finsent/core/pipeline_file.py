"""Financial sentiment as a plain transformers pipeline: the custom pipeline a finsent release ships.

This file is copied into every release folder as ``finsent_pipeline.py`` and registered in its
``config.json`` (``custom_pipelines``), so the folder (or its Hub repo) works without finsent::

    from transformers import pipeline

    clf = pipeline("text-classification", model="oopere/Llama-FinSent-S", trust_remote_code=True)
    clf("Acme beats estimates and raises guidance")
    # [{'label': 'positive', 'score': 0.97}, {'label': 'neutral', 'score': 0.02}, {'label': 'negative', ...}]
    clf(["...", "..."], scheme="7", kind="tweet")

It scores every label as the answer after the FinGPT prompt, exactly as ``finsent``'s
``FinSentClassifier`` (label scoring): the prompt is tokenized in the same pieces (instruction prefix
with the tokenizer's special tokens, then `` {text}``, then ``\\nAnswer:``), over-long texts lose news
tokens from the end, and a label's score is the softmax over labels of the summed log-probabilities of
its answer tokens (`` {label}\\n``). Every label is returned, best first. Options: ``scheme`` ("3" or
"7"), ``kind`` ("news" or "tweet", the word in the instruction), ``max_length`` (default 512).

On a CPU, float16 / bfloat16 weights are upcast to float32 (finsent does the same: half-precision
matrix products are slow on most CPUs and round the scores). It must import nothing but the standard
library, torch and transformers: it runs where finsent is not installed.
"""

from __future__ import annotations

import operator
import unicodedata

import torch
from transformers import Pipeline

SCHEMES = {
    "3": ("negative", "neutral", "positive"),
    "7": ("strong negative", "moderately negative", "mildly negative", "neutral", "mildly positive",
          "moderately positive", "strong positive"),
}
KINDS = ("news", "tweet")
CUE = "\nAnswer:"
MAX_LENGTH = 512


def instruction(scheme: str, kind: str) -> str:
    return f"What is the sentiment of this {kind}? Please choose an answer from {{{'/'.join(SCHEMES[scheme])}}}."


# finsent's one input-text rule (finsent.core.prompts.check_text and invisible), copied: this file cannot import
# finsent. Keep the two equal (tests compare them).
IGNORABLE = frozenset([0x034F, 0x115F, 0x1160, 0x17B4, 0x17B5, *range(0x180B, 0x1810), 0x3164,
                       *range(0xFE00, 0xFE10), 0xFFA0, *range(0xFFF0, 0xFFF9)])


def invisible(char: str) -> bool:
    """Whether one character renders as nothing (whitespace, format, control, default-ignorable)."""
    code = ord(char)
    return (char.isspace() or unicodedata.category(char) in ("Cf", "Cc") or code in IGNORABLE
            or 0xE0000 <= code <= 0xE0FFF)


def check_text(text) -> str:
    """The text stripped, or ValueError saying what is wrong with it (the messages are finsent's)."""
    if not isinstance(text, str):
        raise ValueError(f"text must be a string, got {type(text).__name__}: {text!r:.60}")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        char = text[exc.start]
        if "\udc80" <= char <= "\udcff":  # Python's surrogateescape stand-in for an undecodable byte
            problem = f"not valid UTF-8 (byte 0x{ord(char) - 0xDC00:02x} at character {exc.start + 1})"
        else:
            problem = f"not valid Unicode (lone surrogate {char!r} at character {exc.start + 1})"
        raise ValueError(f"text is {problem}: send UTF-8 text") from None
    stripped = text.strip()
    if not stripped:
        raise ValueError("text is empty (or only whitespace): nothing to classify")
    if all(map(invisible, stripped)):
        char = stripped[0]
        name = unicodedata.name(char, "CONTROL" if unicodedata.category(char) == "Cc" else "UNNAMED")
        raise ValueError(f"text is empty (only invisible characters, such as U+{ord(char):04X} {name}): "
                         "nothing to classify")
    return stripped


def check_max_length(value) -> int:
    """``max_length`` as a whole number of tokens >= 1 (digits in a string too), or ValueError naming it."""
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    try:
        number = None if isinstance(value, bool) else operator.index(value)
    except TypeError:
        number = None
    if number is None or number < 1:
        raise ValueError(f"max_length must be a whole number of tokens >= 1, got {value!r:.60}")
    return number


class FinSentPipeline(Pipeline):
    """``text-classification`` by label scoring after the FinGPT prompt; returns every label with its probability."""

    _load_tokenizer = True
    _load_processor = False
    _load_image_processor = False
    _load_feature_extractor = False
    _load_video_processor = False

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.device.type == "cpu" and self.model.dtype in (torch.float16, torch.bfloat16):
            self.model = self.model.float()
        self.model.eval()

    def _sanitize_parameters(self, scheme=None, kind=None, max_length=None, **kwargs):
        pre = {}
        if scheme is not None:
            pre["scheme"] = str(scheme).strip()
            if pre["scheme"] not in SCHEMES:
                raise ValueError(f"unknown label scheme {scheme!r}: choose '3' or '7'")
        if kind is not None:
            if kind not in KINDS:
                raise ValueError(f"unknown text kind {kind!r}: choose one of {', '.join(KINDS)}")
            pre["kind"] = kind
        if max_length is not None:
            pre["max_length"] = check_max_length(max_length)
        if kwargs:
            raise TypeError(f"unexpected option(s) {', '.join(sorted(kwargs))}: use scheme, kind or max_length")
        return pre, {}, {}

    # --- the FinGPT prompt, in finsent's pieces ---------------------------------------------------

    def _ids(self, text: str, special: bool = False) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=special)["input_ids"])

    def preprocess(self, text, scheme: str = "3", kind: str = "news", max_length: int = MAX_LENGTH):
        text = check_text(text)
        labels = SCHEMES[scheme]
        context = getattr(self.model.config, "max_position_embeddings", None) or max_length
        max_length = min(max_length, context)
        prefix = self._ids(f"Instruction: {instruction(scheme, kind)}\nInput:", special=True)
        news = self._ids(" " + text)
        cue = self._ids(CUE)
        answers = [self._ids(f" {label}\n") for label in labels]
        room = max_length - len(prefix) - len(cue) - max(map(len, answers))
        if room < 1:
            raise ValueError(f"max_length {max_length} leaves no room for the text")
        prompt = prefix + news[:room] + cue
        # One row per label: the prompt, then the label's answer tokens but the last (targets only).
        rows = [prompt + ans[:-1] for ans in answers]
        width = max(map(len, rows))
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        ids = torch.tensor([r + [pad] * (width - len(r)) for r in rows])
        mask = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows])
        # (row, position, target): the position whose next-token distribution scores answer token ``target``.
        targets = torch.tensor([(i, len(prompt) - 1 + j, token)
                                for i, ans in enumerate(answers) for j, token in enumerate(ans)])
        return {"input_ids": ids, "attention_mask": mask, "targets": targets, "labels": labels,
                "truncated": len(news) > room}

    def _forward(self, inputs):
        decoder = getattr(self.model, self.model.base_model_prefix)
        hidden = decoder(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"],
                         use_cache=False).last_hidden_state
        rows, cols, tokens = inputs["targets"].unbind(-1)
        logits = self.model.get_output_embeddings()(hidden[rows, cols]).float()  # [A, V]
        token_lp = logits.gather(1, tokens[:, None])[:, 0] - torch.logsumexp(logits, dim=-1)
        scores = torch.zeros(len(inputs["labels"]), dtype=torch.float32, device=token_lp.device)
        scores.index_add_(0, rows, token_lp)  # sum of each label's answer-token log-probabilities
        return {"scores": scores.cpu(), "labels": inputs["labels"]}

    def postprocess(self, outputs):
        probs = torch.softmax(outputs["scores"], dim=-1).tolist()
        ranked = sorted(zip(outputs["labels"], probs), key=lambda pair: -pair[1])
        return [{"label": label, "score": score} for label, score in ranked]
