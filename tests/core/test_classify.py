"""The label scorer against a naive reference, input checks, generation parsing, truncation, model resolution.

The 2-layer random Llama with SmolLM2's real tokenizer; the real SmolLM2 in tests/core/slow/test_classify_smollm2.py.
"""

from __future__ import annotations

import os

import pytest
import torch
from naive_scores import naive_logprobs

from finsent.core.classify import FinSentClassifier, Prediction, answer_nodes
from finsent.core.labels import labels_of
from finsent.core.models import PUBLISHED_MODEL, ModelNotAvailableError, locate_model, resolve_model
from finsent.core.prompts import InputError


@pytest.fixture(scope="module")
def naive_by_scheme(tiny, mixed_texts):
    return {scheme: naive_logprobs(tiny, mixed_texts, scheme) for scheme in ("3", "7")}


# --- exactness of the scorer (tiny random Llama) ------------------------------------------------------------


@pytest.mark.parametrize("scheme", ["3", "7"])
@pytest.mark.parametrize("share_prefix", [True, False])
@pytest.mark.parametrize("batch_size", [1, 7])
@pytest.mark.parametrize("padding_side", ["left", "right"])
def test_scores_equal_naive_full_sequence_logprobs(tiny, mixed_texts, naive_by_scheme, scheme, share_prefix,
                                                   batch_size, padding_side, monkeypatch):
    monkeypatch.setattr(tiny, "share_prefix", share_prefix)
    monkeypatch.setattr(tiny.tokenizer, "padding_side", padding_side)
    got = tiny.label_logprobs(mixed_texts, scheme, batch_size=batch_size)
    assert got.shape == (len(mixed_texts), len(labels_of(scheme)))
    torch.testing.assert_close(got.double(), naive_by_scheme[scheme], atol=2e-4, rtol=1e-5)


def test_batch_composition_does_not_change_scores(tiny, mixed_texts):
    alone = tiny.label_logprobs(mixed_texts[:1], "3", batch_size=1)
    for companions in (mixed_texts[1:4], mixed_texts[5:], ["Up."] * 6):
        together = tiny.label_logprobs([mixed_texts[0], *companions], "3", batch_size=len(companions) + 1)
        torch.testing.assert_close(together[:1], alone, atol=2e-5, rtol=1e-5)


def test_answer_nodes_share_label_prefixes(tiny):
    # SmolLM2's tokenizer: " positive\n" = [" positive", "\n"]; 7-class shares " strong", " mildly", ...
    answers = {s: [tiny.encoder.answer_ids(label) for label in labels_of(s)] for s in ("3", "7")}
    assert [len(n) for n in answer_nodes(answers["3"])] == [1, 1, 1]
    nodes7 = answer_nodes(answers["7"])
    assert sorted(len(n) for n in nodes7) == [1, 1, 1, 1] + [2] * 6  # strong/moderately/mildly/neutral + 6 pairs
    assert all(n[:-1] in nodes7 for n in nodes7 if len(n) > 1)  # every parent is itself a node
    assert answer_nodes([(5, 7, 9), (5, 8, 9), (6,)]) == [(5,), (5, 7), (5, 8)]


def test_tweet_kind_scores_equal_naive(tiny, mixed_texts):
    got = tiny.label_logprobs(mixed_texts[:4], "3", kind="tweet", batch_size=4)
    torch.testing.assert_close(got.double(), naive_logprobs(tiny, mixed_texts[:4], "3", "tweet"),
                               atol=2e-4, rtol=1e-5)


def test_truncated_text_scores_equal_naive(tiny_llama_dir, mixed_texts):
    clf = FinSentClassifier.from_pretrained(str(tiny_llama_dir), max_length=80)
    texts = [" ".join(mixed_texts) * 3, mixed_texts[0]]
    preds = clf.classify(texts, "7", batch_size=2)
    assert [p.truncated for p in preds] == [True, False]
    torch.testing.assert_close(clf.label_logprobs(texts, "7", batch_size=2).double(),
                               naive_logprobs(clf, texts, "7"), atol=2e-4, rtol=1e-5)


def test_classify_probabilities_are_softmax_of_logprobs(tiny, mixed_texts):
    preds = tiny.classify(mixed_texts, "3", batch_size=4)
    expected = torch.softmax(tiny.label_logprobs(mixed_texts, "3"), dim=-1)
    for pred, row in zip(preds, expected):
        assert isinstance(pred, Prediction) and pred.mode == "score"
        assert list(pred.probs) == list(labels_of("3"))
        assert sum(pred.probs.values()) == pytest.approx(1.0, abs=1e-6)
        torch.testing.assert_close(torch.tensor(list(pred.probs.values())), row, atol=1e-5, rtol=1e-5)
        assert pred.label == max(pred.probs, key=pred.probs.get)


def test_single_text_returns_one_prediction(tiny):
    pred = tiny.classify("  Acme beats estimates  ", "7")
    assert isinstance(pred, Prediction)
    assert pred.text == "Acme beats estimates" and pred.label in labels_of("7")


# --- bad input --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("bad, problem", [("", "empty"), ("   \n\t", "empty"), (None, "string"), (42, "string"),
                                          ("bad \ud800 text", r"not valid Unicode \(lone surrogate '\\ud800' at "
                                                                r"character 5\)"),
                                          ("caf\udcc3", r"not valid UTF-8 \(byte 0xc3 at character 4\)")])
def test_bad_item_raises_input_error_naming_it(tiny, bad, problem):
    with pytest.raises(InputError, match=rf"text #2: .*{problem}"):
        tiny.classify(["fine", "also fine", bad], "3")


@pytest.mark.parametrize("batch_size", [0, -1, 2.5, True])
def test_batch_size_zero_or_negative_is_an_error_not_the_default(tiny, batch_size):
    with pytest.raises(InputError, match=f"batch_size must be an integer >= 1, got {batch_size!r}"):
        tiny.classify(["fine"], "3", batch_size=batch_size)
    with pytest.raises(InputError, match="batch_size must be an integer >= 1"):
        tiny.label_logprobs(["fine"], "3", batch_size=batch_size)


def test_unknown_kind_and_mode_are_errors(tiny):
    with pytest.raises(InputError, match="kind"):
        tiny.classify(["ok"], "3", kind="blog")
    with pytest.raises(ValueError, match="mode"):
        tiny.classify(["ok"], "3", mode="sample")


# --- configurations ---------------------------------------------------------------------------------------


def test_dtype_auto_is_float32_on_a_cpu_without_native_bf16(tiny_llama_dir, monkeypatch):
    from finsent.core import precision  # with AVX-512 BF16 / AMX it measures first: tests/speed/test_speed_variants.py

    monkeypatch.setattr(precision, "cpu_bf16_feature", lambda: None)
    clf = FinSentClassifier.from_pretrained(str(tiny_llama_dir), dtype="auto")
    assert clf.dtype == torch.float32


def test_int8_quantization_replaces_linears_and_still_classifies(tiny_llama_dir, tiny, mixed_texts):
    from torch.ao.nn.quantized.dynamic import Linear as DynamicQuantizedLinear

    clf = FinSentClassifier.from_pretrained(str(tiny_llama_dir), quantize="int8")
    assert not any(type(m) is torch.nn.Linear for m in clf.model.modules())
    assert isinstance(clf.model.get_output_embeddings(), DynamicQuantizedLinear)
    got = clf.label_logprobs(mixed_texts, "3")
    assert torch.isfinite(got).all()
    # Approximate, not exact: close to float32 on average (measured on SmolLM2 in eval/bench/).
    assert (got - tiny.label_logprobs(mixed_texts, "3")).abs().mean() < 0.5


def test_quantize_after_use_equals_quantize_at_load(tiny_llama_dir, mixed_texts):
    used = FinSentClassifier.from_pretrained(str(tiny_llama_dir))
    used.label_logprobs(mixed_texts[:2], "3")  # fills the float32 prefix cache
    used.quantize("int8")
    fresh = FinSentClassifier.from_pretrained(str(tiny_llama_dir), quantize="int8")
    assert torch.equal(used.label_logprobs(mixed_texts[:3], "3"), fresh.label_logprobs(mixed_texts[:3], "3"))


def test_unknown_quantize_is_an_error(tiny_llama_dir):
    with pytest.raises(ValueError, match="quantize"):
        FinSentClassifier.from_pretrained(str(tiny_llama_dir), quantize="int4")


# --- model resolution ---------------------------------------------------------------------------------------


def _release(root, name, mtime):
    folder = root / name
    folder.mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    os.utime(folder / "config.json", (mtime, mtime))
    return folder


def test_model_resolution_order(tmp_path, monkeypatch):
    releases = tmp_path / "releases"
    monkeypatch.setenv("FINSENT_RELEASES", str(releases))
    monkeypatch.delenv("FINSENT_MODEL", raising=False)
    assert resolve_model() == PUBLISHED_MODEL
    _release(releases, "old", 1_000_000)
    newest = _release(releases, "new", 2_000_000)
    (releases / "not-a-model").mkdir()
    assert resolve_model() == str(newest)
    monkeypatch.setenv("FINSENT_MODEL", "someone/env-model")
    assert resolve_model() == "someone/env-model"
    assert resolve_model("explicit/model") == "explicit/model"


def test_bad_local_paths_are_model_not_available(tmp_path):
    with pytest.raises(ModelNotAvailableError, match="no config.json"):
        locate_model(tmp_path)
    with pytest.raises(ModelNotAvailableError, match="neither an existing folder nor a Hub id"):
        locate_model(str(tmp_path / "missing"))


def test_hub_id_offline_names_the_offline_choices(monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(ModelNotAvailableError, match=r"Offline choices: --model smollm2") as info:
        FinSentClassifier.from_pretrained("nobody-here/not-a-model")
    assert "nobody-here/not-a-model" in str(info.value)
