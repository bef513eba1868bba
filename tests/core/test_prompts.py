"""The FinGPT prompt: exact text, piecewise tokenization, truncation from the news side only."""

import csv

import pytest
from transformers import AutoTokenizer

from finsent.core.prompts import (
    InputError,
    PromptEncoder,
    answer_piece,
    instruction,
    prompt_text,
    training_text,
)


def test_instruction_and_prompt_text_match_fingpt():
    assert instruction("3", "news") == (
        "What is the sentiment of this news? Please choose an answer from {negative/neutral/positive}."
    )
    assert instruction(7, "tweet") == (
        "What is the sentiment of this tweet? Please choose an answer from {strong negative/moderately negative/"
        "mildly negative/neutral/mildly positive/moderately positive/strong positive}."
    )
    assert prompt_text("I", "  Sales rose  ") == "Instruction: I\nInput: Sales rose\nAnswer:"
    assert training_text("I", "Sales rose", "positive") == "Instruction: I\nInput: Sales rose\nAnswer: positive\n"


@pytest.mark.parametrize("bad", ["", "   \n\t", None, 42, ["text"]])
def test_bad_texts_are_refused_by_name(bad):
    with pytest.raises(InputError, match="empty|must be a string"):
        prompt_text("I", bad)


def test_unknown_kind_is_refused():
    with pytest.raises(InputError, match="unknown text kind 'blog'"):
        instruction("3", "blog")


@pytest.fixture(scope="module")
def tokenizer(smollm2_dir):
    return AutoTokenizer.from_pretrained(smollm2_dir)


def test_piecewise_ids_equal_whole_string_ids_on_real_tfns(tokenizer, shared_data):
    """Training and scoring tokenize the pieces separately; that must equal tokenizing the whole line."""
    enc = PromptEncoder(tokenizer)
    with open(shared_data / "tfns" / "sent_valid.csv", newline="") as fh:
        texts = [row["text"] for row in csv.DictReader(fh)][:600]
    for scheme in ("3", "7"):
        instr = instruction(scheme, "tweet")
        for text in texts:
            e = enc.encode(instr, text)
            label = "neutral"
            whole = tokenizer(prompt_text(instr, text) + answer_piece(label))["input_ids"]
            assert e.ids + list(enc.answer_ids(label)) == whole, text


def test_truncation_cuts_only_the_news(tokenizer):
    enc = PromptEncoder(tokenizer, max_length=64)
    instr = instruction("7")
    long_text = "Revenue grew strongly across every region and segment this quarter. " * 40
    e = enc.encode(instr, long_text, reserve=enc.max_answer_len(["strong negative"]))
    assert e.truncated
    assert len(e.ids) + enc.max_answer_len(["strong negative"]) <= 64
    assert e.prefix == enc.prefix_ids(instr)
    assert e.body[-len(enc.cue_ids()):] == enc.cue_ids()  # the Answer: cue survives
    short = enc.encode(instr, "Revenue grew.")
    assert not short.truncated


def test_no_room_for_text_is_an_error(tokenizer):
    enc = PromptEncoder(tokenizer, max_length=20)
    with pytest.raises(InputError, match="leaves no room"):
        enc.encode(instruction("7"), "Revenue grew.")
