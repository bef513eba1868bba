"""``finsent bench`` on the tiny random Llama: a well-formed speed.json, table and plot (no timing assertions).

Run: ``.venv/bin/pytest tests/speed``.
"""

from __future__ import annotations

import json

import pytest
from checkout import REPO

from finsent.core.texts import SpeedTextsError, load_texts
from finsent.speed.bench import run_bench
from finsent.speed.floor import matmul_params_per_token, scoring_flops
from finsent.speed.shape import published_shape_config


def test_matmul_params_of_the_published_shape():
    config = published_shape_config()
    embeddings = config.vocab_size * config.hidden_size
    norms = (2 * config.num_hidden_layers + 1) * config.hidden_size
    assert matmul_params_per_token(config) == 913_770_496 - embeddings - norms == 651_034_624


def test_scoring_flops_by_hand():
    config = published_shape_config()
    linear, head = 651_034_624, 128_256 * 2048
    per_key = 4 * 32 * 64 * 16
    # prefix 2, body 3 (keys 3+4+5); answers (5, 7, 9), (5, 8, 9), (6, 9) have the nodes (5,), (5, 7), (5, 8)
    # and (6,) at depths 1, 2, 2, 1 (keys 2+3+depth each); the LM head runs at the cue and the 4 nodes.
    flops, tokens = scoring_flops(config, 2, [3], [(5, 7, 9), (5, 8, 9), (6, 9)])
    assert tokens == 3 + 4
    assert flops == 2 * linear * 7 + 2 * head * 5 + per_key * (3 + 4 + 5 + 6 + 7 + 7 + 6)
    # single-token answers need no node: the cue predicts them all
    flops, tokens = scoring_flops(config, 2, [3], [(5,), (6,)])
    assert (tokens, flops) == (3, 2 * linear * 3 + 2 * head * 1 + per_key * (3 + 4 + 5))


def test_bench_rejects_a_missing_text_file(tiny_llama_dir, tmp_path):
    with pytest.raises(FileNotFoundError, match="benchmark texts not found"):
        run_bench(str(tiny_llama_dir), tmp_path, n=2, texts_file=tmp_path / "nope.csv")


def test_speed_texts_are_read_like_every_other_table(tmp_path):
    """One reader (finsent.core.tables) and one text rule (prompts.check_text): BOM CSV, JSON array, JSON lines."""
    bom = tmp_path / "bom.csv"
    bom.write_bytes("\ufefftext,label\n  $X up  ,1\n$Y down,0\n".encode())
    assert load_texts(bom, 5) == ["$X up", "$Y down"]
    array = tmp_path / "texts.json"
    array.write_text(json.dumps([{"text": "a"}, {"text": "b"}, {"text": "c"}]))
    lines = tmp_path / "lines.json"
    lines.write_text('{"text": "a"}\n{"text": "b"}\n')
    assert load_texts(array, 2) == ["a", "b"] and load_texts(lines, 5) == ["a", "b"]
    empty = tmp_path / "empty.jsonl"
    empty.write_text('{"text": "a"}\n{"text": "  "}\n')
    with pytest.raises(SpeedTextsError, match=r"empty.jsonl: line 2: field 'text': text is empty"):
        load_texts(empty, 5)
    no_column = tmp_path / "news.csv"
    no_column.write_text("headline\nx\n")
    with pytest.raises(SpeedTextsError, match=r"news.csv: no column 'text' \(its columns: 'headline'\)"):
        load_texts(no_column, 5)


def test_readme_bench_commands_parse():
    """Every `finsent bench` line of eval/bench/README.md and eval/README.md is a valid command of this CLI."""
    import shlex

    from finsent.cli import build_parser, speed

    root = REPO
    docs = [(root / doc).read_text().replace("\\\n", " ") for doc in ("eval/bench/README.md", "eval/README.md")]
    lines = [line for text in docs for line in text.splitlines() if line.startswith("finsent bench")]
    assert len(lines) >= 3 and all("\\" not in line for line in lines)
    for line in lines:
        args = build_parser().parse_args(shlex.split(line)[1:])
        if line.startswith("finsent bench-quality"):
            assert args.func is speed._bench_quality and args.data.is_file(), line
            continue
        assert args.func is speed._bench, line
        assert args.texts.is_file() and args.n > 0, line


def test_int8_cost_rows_are_spread_over_the_label_clustered_file(shared_data):
    from finsent.speed.quality import load_tfns

    texts, gold = load_tfns(shared_data / "tfns" / "sent_valid.csv", 9)
    assert len(texts) == len(gold) == 9
    assert set(gold) == {"negative", "neutral", "positive"}  # the first 9 rows alone are all negative


def test_bench_outputs_replace_only_finsent_reports_and_never_the_model_read(tiny_llama_dir, tmp_path, capsys):
    """speed.* / quality.* of someone else's are refused without --overwrite; a bench's own are replaced; the
    folder of the model the command reads is refused even with --overwrite. Nothing runs or changes first."""
    from finsent.cli import main

    texts = tmp_path / "texts.jsonl"
    texts.write_text('{"text": "$X up"}\n{"text": "$Y down"}\n')
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    (theirs / "speed.md").write_text("my notes\n")
    (theirs / "quality.json").write_text('{"kind": "mine"}\n')
    model_files = sorted(p.name for p in tiny_llama_dir.iterdir())
    bench = ["bench", "--model", str(tiny_llama_dir), "--texts", str(texts), "--n", "2", "--gen-n", "1",
             "--batch-sizes", "2", "--variants", "float32", "--no-profile"]
    quality = ["bench-quality", str(tiny_llama_dir), "--data", str(texts), "--variants", "float32"]
    cases = [
        (bench + ["--out", str(theirs)], "holds speed.md that finsent did not write: pass --overwrite"),
        (quality + ["--out", str(theirs)], "holds quality.json that finsent did not write: pass --overwrite"),
        (bench + ["--out", str(tiny_llama_dir), "--overwrite"], "which this command reads"),
        (quality + ["--out", str(tiny_llama_dir.parent), "--overwrite"], "which this command reads"),
    ]
    for argv, message in cases:
        assert main(argv) == 2, argv
        assert message in capsys.readouterr().err, argv
    assert (theirs / "speed.md").read_text() == "my notes\n"
    assert (theirs / "quality.json").read_text() == '{"kind": "mine"}\n'
    assert sorted(p.name for p in tiny_llama_dir.iterdir()) == model_files

    ours = tmp_path / "ours"
    assert main(bench + ["--out", str(ours)]) == 0
    first = json.loads((ours / "speed.json").read_text())
    assert main(bench + ["--out", str(ours)]) == 0  # a bench's own report: replaced without --overwrite
    assert json.loads((ours / "speed.json").read_text())["model"] == first["model"]
    assert main(bench + ["--out", str(theirs), "--overwrite"]) == 0
    assert (theirs / "speed.md").read_text() != "my notes\n" and (theirs / "quality.json").exists()
