"""Vocabulary trimming (prune.vocab_first) on the real SmolLM2 and real TFNS / FPB rows: the trimmed folder, the
trimmed teacher, llama.cpp on a trimmed model, the command line, min_count."""

from __future__ import annotations

import csv
import json

import pytest
import torch
from finetune_factory import recipe_file
from transformers import AutoModelForCausalLM, AutoTokenizer

from finsent.build.data import load_mixture
from finsent.build.finetune import load_teacher
from finsent.build.pruning import count_params, prune_model, run_prune, vocab_rows
from finsent.build.vocab import VocabError, token_map
from finsent.core.classify import FinSentClassifier
from finsent.core.prompts import PromptEncoder, instruction
from finsent.core.recipes import FinetuneSection, RecipeError, load_recipe


@pytest.fixture(scope="module")
def trimmed(tmp_path_factory, smollm2_dir, shared_data):
    tmp = tmp_path_factory.mktemp("vocab")
    recipe = load_recipe(recipe_file(tmp, shared_data))
    rows = vocab_rows(recipe)
    out = run_prune(recipe.prune, str(smollm2_dir), tmp / "pruned", progress=False, vocab=rows)
    return recipe, rows, out


def test_trimmed_folder_keeps_every_training_token_and_the_models_logits(trimmed, smollm2_dir, shared_data):
    recipe, rows, out = trimmed
    report = json.loads((out / "pruning.json").read_text())
    full_tok, tok = AutoTokenizer.from_pretrained(smollm2_dir), AutoTokenizer.from_pretrained(out)
    model = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32).eval()
    keep = token_map(tok, full_tok)  # the kept ids of the full vocabulary, in order
    assert keep == sorted(keep) and keep[:17] == list(range(17))  # special tokens keep their ids
    assert report["vocab"]["before"] == 49152 == len(full_tok)
    assert report["vocab"]["after"] == len(tok) == len(keep) == model.config.vocab_size < 49152 // 2
    f = recipe.finetune
    train = load_mixture(f.data, seed=f.seed, dev_fraction=f.dev_fraction).examples
    assert report["vocab"]["rows"] == len(rows) == len(train) + 2 * 3 + 2 * 7  # training rows + each label's prompt
    assert rows[:len(train)] == [(e.instruction, e.text, e.answer) for e in train]
    assert report["params_after"] == count_params(model)
    assert model.get_output_embeddings().weight is model.get_input_embeddings().weight  # still tied

    # Every training row tokenizes to the same pieces as before, renumbered.
    full_enc, enc = PromptEncoder(full_tok, 4096), PromptEncoder(tok, 4096)
    for prompt, text, answer in rows:
        assert [keep[i] for i in enc.encode(prompt, text).ids] == full_enc.encode(prompt, text).ids
        assert [keep[i] for i in enc.answer_ids(answer)] == list(full_enc.answer_ids(answer))
    # A text with tokens that were not kept still round-trips, in more (kept) pieces.
    odd = "Zyxqorp Holdings soared 12 % après l'annonce 😀"
    assert tok.decode(tok(odd)["input_ids"]) == odd

    # The same model pruned in memory without trimming: its logits at the kept ids are the trimmed model's.
    reference = AutoModelForCausalLM.from_pretrained(smollm2_dir, dtype=torch.float32).eval()
    prune_model(reference, method="ppm", ratio=0.1, progress=False)
    with open(shared_data / "tfns" / "sent_valid.csv", encoding="utf-8", newline="") as handle:
        unseen = next(csv.DictReader(handle))["text"]
    ids = enc.encode(rows[0][0], unseen).ids  # a validation tweet, in kept pieces
    with torch.no_grad():
        want = reference(input_ids=torch.tensor([[keep[i] for i in ids]])).logits[..., keep]
        got = model(input_ids=torch.tensor([ids])).logits
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    # The classifier reads the label tokens through the trimmed tokenizer: training tweets (whose tokens all
    # stayed) get the same answers as from the untrimmed model, and nearly the same probabilities: each answer
    # token's softmax (the label's, then its end) now spreads over 22k tokens, not 49k (measured: <= 0.015).
    tweets = [text for ins, text, _ in rows if ins == instruction("3", "tweet")][:12]
    full = FinSentClassifier(reference, full_tok).classify(tweets, "3", kind="tweet")
    small = FinSentClassifier(model, tok).classify(tweets, "3", kind="tweet")
    assert len(tweets) == 12 and [a.label for a in small] == [a.label for a in full]
    for a, b in zip(small, full, strict=True):
        assert a.probs == pytest.approx(b.probs, abs=0.03)


def test_teacher_is_trimmed_to_the_students_tokens_for_distillation(trimmed, smollm2_dir):
    _, _, out = trimmed
    student = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32)
    tok = AutoTokenizer.from_pretrained(out)
    distill = load_teacher(FinetuneSection(distill_from=str(smollm2_dir)), student, tok, torch.float32, "cpu")
    full = AutoModelForCausalLM.from_pretrained(smollm2_dir, dtype=torch.float32)
    keep = token_map(tok, AutoTokenizer.from_pretrained(smollm2_dir))
    assert distill.teacher.config.vocab_size == student.config.vocab_size == len(keep)
    assert torch.equal(distill.teacher.get_input_embeddings().weight, full.get_input_embeddings().weight[keep])
    with pytest.raises(VocabError, match=r"tokens of the student are not in the teacher's vocabulary"):
        token_map(AutoTokenizer.from_pretrained(smollm2_dir), tok)  # a full student, a trimmed teacher


def test_llama_cpp_tokenizes_and_scores_a_trimmed_model_like_transformers(trimmed, smollm2_dir, shared_data,
                                                                          tmp_path):
    """The GGUF export writes the trimmed vocabulary and merges; llama.cpp then splits unseen tweets (words whose
    tokens were dropped) into the same kept pieces as transformers and gives the classifier's labels."""
    pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed (pip install llama-cpp-python)")
    import numpy as np

    from finsent.core.prompts import news_piece
    from finsent.export.gguf import GGUFScorer, export_gguf

    _, _, out = trimmed
    with open(shared_data / "tfns" / "sent_valid.csv", encoding="utf-8", newline="") as handle:
        tweets = [r["text"] for _, r in zip(range(40), csv.DictReader(handle))]
    clf = FinSentClassifier.from_pretrained(str(out))
    full = AutoTokenizer.from_pretrained(smollm2_dir)
    split = [t for t in tweets if len(clf.tokenizer(t)["input_ids"]) > len(full(t)["input_ids"])]
    assert len(split) >= 10  # tweets with words whose tokens were dropped: they exercise the missing merges
    gguf = export_gguf(out, tmp_path / "trimmed.f16.gguf", quant="f16")
    with GGUFScorer(gguf, threads=2) as scorer:
        for text in tweets:
            want = clf.tokenizer(news_piece(text), add_special_tokens=False)["input_ids"]
            assert scorer.tokenize(news_piece(text)) == want
        got = scorer.label_logprobs(tweets, "3", "tweet")
    ref = clf.label_logprobs(tweets, "3", kind="tweet").double().numpy()
    assert (got.argmax(1) == ref.argmax(1)).mean() >= 0.95 and np.abs(got - ref).max() < 0.05


def test_cli_prune_trims_the_vocabulary_with_a_recipe_and_refuses_without(tiny_llama_dir, shared_data, tmp_path,
                                                                          capsys):
    from finsent.cli import main

    recipe = recipe_file(tmp_path, shared_data, first=500)
    out = tmp_path / "out"
    assert main(["prune", "--recipe", recipe, "--model", str(tiny_llama_dir), "--vocab-first", "300", "--out",
                 str(out), "--no-progress"]) == 0
    printed = json.loads(capsys.readouterr().out.splitlines()[0])
    assert printed["vocab"]["first"] == 300 and printed["vocab"]["before"] == 49152
    assert printed["vocab"]["after"] == len(AutoTokenizer.from_pretrained(out)) < 20_000
    assert main(["prune", "--model", str(tiny_llama_dir), "--vocab-first", "300", "--out", str(tmp_path / "o")]) == 2
    assert "--vocab-first keeps the tokens of a recipe's training data: give --recipe too" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_min_count_keeps_only_tokens_seen_that_often(tmp_path, shared_data, smollm2_dir, tiny_llama_dir, capsys):
    """prune.vocab_min_count: a training token is kept only if the rows use it N times; rarer words still
    tokenize, into kept pieces, and the recipe, the CLI and the report carry the setting."""
    from finsent.build.vocab import used_ids
    from finsent.cli import main

    tok = AutoTokenizer.from_pretrained(smollm2_dir)
    recipe = load_recipe(recipe_file(tmp_path, shared_data))
    rows = vocab_rows(recipe)
    once, twice = used_ids(tok, rows), used_ids(tok, rows, 2)
    assert used_ids(tok, rows * 2, 2) == once  # every token of rows appears twice in rows * 2
    assert twice < once and len(twice) < 0.8 * len(once)  # real tweets: many tokens occur once
    enc = PromptEncoder(tok, 4096)
    with pytest.raises(VocabError, match="prune.vocab_min_count must be >= 1, got 0"):
        used_ids(tok, rows, 0)

    out = tmp_path / "min2"
    assert main(["prune", "--recipe", recipe_file(tmp_path, shared_data, first=300), "--model", str(tiny_llama_dir),
                 "--vocab-min-count", "2", "--out", str(out), "--no-progress"]) == 0
    printed = json.loads(capsys.readouterr().out.splitlines()[0])
    trimmed = AutoTokenizer.from_pretrained(out)
    assert printed["vocab"]["min_count"] == 2 and printed["vocab"]["first"] == 300
    assert printed["vocab"]["after"] == len(trimmed) < len(once)
    keep = set(token_map(trimmed, tok))
    dropped = (once - twice) - keep
    assert twice <= keep and len(dropped) > 100
    # A training text with a dropped token still round-trips, in more (kept) pieces.
    text = next(text for ins, text, _ in rows if dropped & set(enc.encode(ins, text).ids))
    assert trimmed.decode(trimmed(text)["input_ids"]) == text
    assert len(trimmed(text)["input_ids"]) > len(tok(text)["input_ids"])

    (tmp_path / "bad.yaml").write_text(
        open(recipe_file(tmp_path, shared_data)).read().replace("  vocab_first: 1000\n",
                                                                "  vocab_first: 1000\n  vocab_min_count: 0\n"))
    with pytest.raises(RecipeError, match=r"prune.vocab_min_count must be an integer >= 1, got 0"):
        load_recipe(tmp_path / "bad.yaml")
    (tmp_path / "untrimmed.yaml").write_text("name: u\nprune:\n  ratio: 0.3\n  vocab_min_count: 3\n")
    with pytest.raises(RecipeError, match=r"prune.vocab_min_count counts the tokens a trimmed vocabulary keeps: set "
                                          r"prune.vocab_first too"):
        load_recipe(tmp_path / "untrimmed.yaml")
    assert main(["prune", "--model", str(tiny_llama_dir), "--vocab-min-count", "2", "--out", str(tmp_path / "o")]) == 2
    assert "--vocab-min-count counts the tokens of a recipe's training data" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
