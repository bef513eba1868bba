"""The FinGPT prompt, built once for training and inference so the two can never drift.

A prompt is three pieces, tokenized separately and concatenated:

    prefix  = "Instruction: {instruction}\\nInput:"      shared by every text of a scheme/kind
    news    = " {text}"                                 the only piece ever truncated
    cue     = "\\nAnswer:"
    answer  = " {label}\\n"                              scored (classify) or learned (finetune)

Tokenizing the pieces separately makes the prefix's token ids identical for every text (so its
key/value cache can be computed once and shared), lets truncation cut tokens from the news only,
and gives training the exact answer-token boundary for an answer-only loss.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass

from finsent.core.errors import UsageError
from finsent.core.labels import labels_of

KINDS = ("news", "tweet")


class InputError(UsageError, ValueError):
    """A text that cannot be classified (empty, not a string...)."""


def instruction(scheme: str | int = "3", kind: str = "news") -> str:
    """FinGPT's instruction: 'tweet' for TFNS and FiQA posts, 'news' otherwise."""
    if kind not in KINDS:
        raise InputError(f"unknown text kind {kind!r}: choose one of {', '.join(KINDS)}")
    choices = "/".join(labels_of(scheme))
    return f"What is the sentiment of this {kind}? Please choose an answer from {{{choices}}}."


def prompt_text(instruction_text: str, text: str) -> str:
    """The prompt as one string (for display, the card and generation), ending with the cue."""
    return f"Instruction: {instruction_text}\nInput: {check_text(text)}\nAnswer:"


def training_text(instruction_text: str, text: str, answer: str) -> str:
    """FinGPT's training line; equal to prompt + answer_piece."""
    return prompt_text(instruction_text, text) + answer_piece(answer)


def prefix_piece(instruction_text: str) -> str:
    return f"Instruction: {instruction_text}\nInput:"


def news_piece(text: str) -> str:
    return " " + check_text(text)


CUE = "\nAnswer:"


def answer_piece(label: str) -> str:
    return f" {label}\n"


def check_text(text: object) -> str:
    """The one input-text rule: the text as the model sees it, or InputError saying what is wrong with it.

    Every text that enters the toolkit goes through here (``classify``, training rows, benchmark rows,
    speed texts, ``finsent classify``, the Space), so a bad one is refused with a reason before any
    work starts, never deep in the tokenizer:

    - it must be a ``str``;
    - it must be Unicode text: a lone surrogate (``"\\ud800"`` from a JSON escape, or the
      ``"\\udcff"`` Python makes of a byte that is not UTF-8 in a command-line argument) is refused,
      naming the character's position;
    - leading and trailing whitespace is stripped (it would change tokenization at piece joints), and
      nothing may be left empty;
    - it must hold a visible character: a text of only invisible ones (zero-width space U+200B, BOM U+FEFF,
      joiners, other format or control characters: ``invisible``) is as empty as a blank line, and a
      model would still give it a confident label.

    Over-long texts are not refused: the prompt encoder cuts the news tokens (``truncated=True``).
    Callers that handle many texts call this once per text, so one bad text fails only itself.
    """
    if not isinstance(text, str):
        raise InputError(f"text must be a string, got {type(text).__name__}: {text!r:.60}")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        char = text[exc.start]
        if "\udc80" <= char <= "\udcff":  # Python's surrogateescape stand-in for an undecodable byte
            problem = f"not valid UTF-8 (byte 0x{ord(char) - 0xDC00:02x} at character {exc.start + 1})"
        else:
            problem = f"not valid Unicode (lone surrogate {char!r} at character {exc.start + 1})"
        raise InputError(f"text is {problem}: send UTF-8 text") from None
    stripped = text.strip()
    if not stripped:
        raise InputError("text is empty (or only whitespace): nothing to classify")
    if all(map(invisible, stripped)):  # stops at the first visible character: cheap for real texts
        char = stripped[0]
        name = unicodedata.name(char, "CONTROL" if unicodedata.category(char) == "Cc" else "UNNAMED")
        raise InputError(f"text is empty (only invisible characters, such as U+{ord(char):04X} {name}): "
                         "nothing to classify")
    return stripped


# Unicode's Default_Ignorable_Code_Point characters outside categories Cf/Cc (fillers, variation selectors,
# tags: DerivedCoreProperties.txt); like them they render as nothing.
IGNORABLE = frozenset([0x034F, 0x115F, 0x1160, 0x17B4, 0x17B5, *range(0x180B, 0x1810), 0x3164,
                       *range(0xFE00, 0xFE10), 0xFFA0, *range(0xFFF0, 0xFFF9)])


def invisible(char: str) -> bool:
    """Whether one character renders as nothing: whitespace, a format (Cf) or control (Cc) character, or
    another default-ignorable code point. The release pipeline file (``pipeline_file.py``) keeps a copy: keep
    both equal."""
    code = ord(char)
    return (char.isspace() or unicodedata.category(char) in ("Cf", "Cc") or code in IGNORABLE
            or 0xE0000 <= code <= 0xE0FFF)


clean_text = check_text  # public alias: both names stay importable


@dataclass(frozen=True)
class EncodedPrompt:
    """Token ids of one prompt. ``prefix`` is shared; ``body`` = news + cue; ``truncated`` says if news was cut."""

    prefix: tuple[int, ...]
    body: tuple[int, ...]
    truncated: bool

    @property
    def ids(self) -> list[int]:
        return [*self.prefix, *self.body]


class PromptEncoder:
    """Tokenizes prompts and answers piecewise with one tokenizer, caching the shared pieces."""

    def __init__(self, tokenizer, max_length: int = 512):
        self.tokenizer = tokenizer
        self.max_length = max_length
        self._cache: dict[tuple[str, str], tuple[int, ...]] = {}

    def _piece(self, kind: str, text: str, special: bool = False) -> tuple[int, ...]:
        key = (kind, text)
        if key not in self._cache:
            ids = self.tokenizer(text, add_special_tokens=special)["input_ids"]
            self._cache[key] = tuple(ids)
        return self._cache[key]

    def prefix_ids(self, instruction_text: str) -> tuple[int, ...]:
        # Only the prefix carries the tokenizer's special start tokens (BOS for Llama 3).
        return self._piece("prefix", prefix_piece(instruction_text), special=True)

    def cue_ids(self) -> tuple[int, ...]:
        return self._piece("cue", CUE)

    def answer_ids(self, label: str) -> tuple[int, ...]:
        return self._piece("answer", answer_piece(label))

    def max_answer_len(self, labels) -> int:
        return max(len(self.answer_ids(label)) for label in labels)

    def encode(self, instruction_text: str, text: str, reserve: int = 0) -> EncodedPrompt:
        """Encode one prompt; cut the news tokens (from the end) so that prompt + ``reserve`` fits.

        ``reserve`` is room kept for what follows the prompt (the answer tokens).
        """
        prefix = self.prefix_ids(instruction_text)
        cue = self.cue_ids()
        news = tuple(self.tokenizer(news_piece(text), add_special_tokens=False)["input_ids"])
        room = self.max_length - len(prefix) - len(cue) - reserve
        if room < 1:
            raise InputError(
                f"max_length {self.max_length} leaves no room for the text after the "
                f"{len(prefix) + len(cue)}-token instruction and {reserve} answer tokens"
            )
        truncated = len(news) > room
        return EncodedPrompt(prefix, news[:room] + cue, truncated)
