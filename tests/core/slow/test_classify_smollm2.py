"""The label scorer on the real SmolLM2: real tweets, equal to the naive reference, strict generation parsing,
truncation, and the embedded conversion's identical logits."""

from __future__ import annotations

import pytest
import torch
from naive_scores import naive_logprobs, tfns_texts

from finsent.core.classify import FinSentClassifier
from finsent.core.labels import labels_of, parse_answer
from finsent.core.prompts import CUE, instruction

# --- the real SmolLM2 -----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def smollm2(smollm2_dir):
    return FinSentClassifier.from_pretrained(str(smollm2_dir))


@pytest.mark.parametrize("scheme", ["3", "7"])
def test_smollm2_classifies_real_tweets(smollm2, shared_data, scheme):
    texts = tfns_texts(shared_data, 6)
    preds = smollm2.classify(texts, scheme, kind="tweet", batch_size=4)
    assert len(preds) == len(texts)
    for pred in preds:
        assert pred.label in labels_of(scheme)
        assert set(pred.probs) == set(labels_of(scheme))
        assert sum(pred.probs.values()) == pytest.approx(1.0, abs=1e-6)
        assert all(0.0 <= p <= 1.0 for p in pred.probs.values())


def test_smollm2_scores_equal_naive(smollm2, shared_data):
    texts = tfns_texts(shared_data, 3)
    got = smollm2.label_logprobs(texts, "3", batch_size=3)
    torch.testing.assert_close(got.double(), naive_logprobs(smollm2, texts, "3"), atol=1e-3, rtol=1e-5)


def test_smollm2_generate_parses_strictly(smollm2, shared_data):
    texts = tfns_texts(shared_data, 2)
    preds = smollm2.classify(texts, "3", kind="tweet", mode="generate", batch_size=1)
    for pred in preds:
        assert pred.mode == "generate" and pred.probs is None
        assert isinstance(pred.answer, str)
        assert pred.label == parse_answer(pred.answer, "3")
        assert pred.label is None or pred.label in labels_of("3")


def test_smollm2_truncation_keeps_instruction_and_cue(smollm2, shared_data):
    long_text = " ".join(tfns_texts(shared_data, 200))
    instr = instruction("3", "news")
    reserve = smollm2.encoder.max_answer_len(labels_of("3"))
    enc = smollm2.encoder.encode(instr, long_text, reserve=reserve)
    assert enc.truncated and len(enc.ids) + reserve == smollm2.encoder.max_length
    decoded = smollm2.tokenizer.decode(enc.ids)
    assert decoded.startswith(f"Instruction: {instr}\nInput: ") and decoded.endswith(CUE)
    pred = smollm2.classify(long_text, "3")
    assert pred.truncated and pred.label in labels_of("3")
    assert smollm2.classify(long_text[:300], "3").truncated is False


def test_embedded_conversion_round_trip_has_identical_logits(smollm2, smollm2_dir):
    from transformers import AutoModelForCausalLM

    from finsent.core.models import smollm2_gguf

    gguf = smollm2_gguf()
    loaded = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
    ids = torch.tensor([smollm2.encoder.encode(instruction("3"), "Acme beats estimates").ids])
    with torch.inference_mode():
        expected = loaded(input_ids=ids).logits
        got = smollm2.model(input_ids=ids).logits
    assert torch.equal(got, expected)
