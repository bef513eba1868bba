"""``finsent bench`` on the tiny random Llama: a well-formed speed.json, table and plot (no timing assertions).

Run: ``.venv/bin/pytest tests/test_speed.py``.
"""

from __future__ import annotations

import json

import pytest

from finsent.cli import main
from finsent.core.texts import SpeedTextsError, load_texts
from finsent.speed.bench import run_bench
from finsent.speed.floor import matmul_params_per_token, scoring_flops
from finsent.speed.report import format_table
from finsent.speed.shape import published_shape_config

ROW_KEYS = {"config", "mode", "scheme", "batch_size", "items_per_second", "p50_ms", "p95_ms", "peak_memory_mb",
            "speedup_vs_card", "threads", "exact", "dtype", "variant"}
VARIANTS = ("float32", "w8a8", "int8", "w8a8-packed")


@pytest.fixture(scope="module")
def quality(tiny_llama_dir, shared_data, tmp_path_factory):
    from finsent.speed.quality import measure_quality

    out = tmp_path_factory.mktemp("quality")
    return measure_quality(str(tiny_llama_dir), shared_data / "tfns" / "sent_valid.csv", out, variants=VARIANTS,
                           n=12, batch_size=4, pack_tokens=64)


@pytest.fixture(scope="module")
def bench(tiny_llama_dir, shared_data, tmp_path_factory, quality):
    out = tmp_path_factory.mktemp("bench")
    result = run_bench(str(tiny_llama_dir), out, schemes=("3", "7"), batch_sizes=(1, 3), n=6, gen_n=2,
                       threads=(1, 2), texts_file=shared_data / "tfns" / "sent_valid.csv", variants=VARIANTS,
                       quality=quality, pack_tokens=64)
    return out, result


def test_bench_quality_command_measures_every_variant_against_float32(tiny_llama_dir, shared_data, tmp_path,
                                                                      capsys):
    code = main(["bench-quality", str(tiny_llama_dir), "--n", "6", "--variants", "int8", "w8a8-packed",
                 "--batch-size", "2", "--data", str(shared_data / "tfns" / "sent_valid.csv"), "--out", str(tmp_path)])
    assert code == 0
    cost = json.loads((tmp_path / "quality.json").read_text())
    assert cost["n"] == 6 and cost["kind"] == "bench-quality" and set(cost["variants"]) == {
        "float32", "int8", "w8a8-packed"}
    reference = cost["variants"]["float32"]
    assert reference["accuracy_delta"] == 0 and reference["label_agreement"] == 1
    assert reference["max_abs_prob_diff"] == 0 and cost["reference_accuracy"] == reference["accuracy"]
    for run in cost["variants"].values():
        assert run["accuracy_delta"] == pytest.approx(run["accuracy"] - reference["accuracy"])
        assert run["mean_abs_prob_diff"] <= run["max_abs_prob_diff"] <= 1 and 0 <= run["label_agreement"] <= 1
    assert (tmp_path / "quality.md").read_text().strip() in capsys.readouterr().out


def test_bench_writes_speed_json_with_every_row(bench, quality, tiny_llama_dir):
    out, result = bench
    saved = json.loads((out / "speed.json").read_text())
    assert saved == json.loads(json.dumps(result))
    assert saved["model"] == str(tiny_llama_dir) and saved["params"] > 0
    assert saved["bytes_on_disk"] == (tiny_llama_dir / "model.safetensors").stat().st_size
    configs = {(r["config"], r["scheme"]) for r in saved["rows"]}
    for scheme in ("3", "7"):
        for config in ("card loop", "score b1", "score b3", "int8 b1", "int8 b3", "w8a8 b1", "w8a8-packed b3"):
            assert (config, scheme) in configs
        best = [c for c, s in configs if s == scheme and c.startswith("best (")]
        assert len(best) == 1
        swept = sorted(c.split(" @ ")[1] for c, s in configs if s == scheme and " @ " in c)
        assert swept == ["1 threads", "2 threads"]  # the fastest row, re-measured at each thread count
    cost = quality["variants"]
    for row in saved["rows"]:
        assert ROW_KEYS <= set(row)
        assert row["items_per_second"] > 0 and row["p50_ms"] > 0 and row["p95_ms"] >= row["p50_ms"] * 0.999
        assert row["peak_memory_mb"] > 0 and row["speedup_vs_card"] > 0
        assert (row["mode"] == "generate") == (row["config"] == "card loop")
        assert row["exact"] == (row["variant"] in (None, "float32"))
        assert ("pack_tokens" in row) == str(row["variant"]).endswith("-packed")
        if row["mode"] == "score":
            assert row["of_floor"] > 0
            # the cost measured by bench-quality (3-class TFNS labels) is on the 3-class rows only
            if row["scheme"] == "3":
                assert row["accuracy_delta"] == cost[row["variant"]]["accuracy_delta"]
                assert row["label_agreement"] == cost[row["variant"]]["label_agreement"]
            else:
                assert "accuracy_delta" not in row
        if row["config"].startswith("best ("):  # exact, or within 0.5 point of float32 on the tuned release
            assert row["exact"] or row["accuracy_delta"] >= -0.005
    # 7-class rows carry no measured cost, so only exact rows can be best there
    assert all(r["exact"] for r in saved["rows"] if r["scheme"] == "7" and r["config"].startswith("best ("))
    card = [r for r in saved["rows"] if r["config"] == "card loop"]
    assert all(r["speedup_vs_card"] == pytest.approx(1.0) and r["n"] == 2 for r in card)


def test_bench_compute_floor_and_outputs(bench):
    out, result = bench
    floor = result["compute_floor"]
    # one probe per (variant's kernel, rows one request feeds it): batch x round(query tokens per item)
    rows3, rows7 = (round(floor["tokens_per_item"][s]) for s in ("3", "7"))
    assert set(floor["gemm_gflops"]) == {f"{v} m={b * t}" for v in ("float32", "w8a8", "int8") for b in (1, 3)
                                         for t in (rows3, rows7)}
    assert min(floor["gemm_gflops"].values()) > 0
    assert set(result["dtype_auto"]["gflops_32_rows"]) == {"float32", "bfloat16"}
    assert result["profile"]["ops"] and sum(share for _, share in result["profile"]["ops"]) <= 1 + 1e-9
    assert result["cpu_flags"] and result["quality"]["n"] == 12 and "variants" not in result["quality"]
    assert set(floor["flops_per_item"]) == {"3", "7"}
    assert floor["flops_per_item"]["7"] > floor["flops_per_item"]["3"] > 0
    table = (out / "speed.md").read_text()
    assert table.strip() == format_table(result)
    assert table.count("| card loop |") == 2 and "x card" in table
    assert (out / "speed.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


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
    from pathlib import Path

    from finsent.cli import build_parser, speed

    root = Path(__file__).resolve().parents[1]
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


def test_a_cost_measured_later_is_applied_to_a_speed_json(bench, quality, tiny_llama_dir, shared_data, tmp_path):
    """bench-quality --apply: the costs land on the rows, best is re-selected among admissible rows, md rewritten."""
    import shutil

    out, result = bench
    speed = tmp_path / "speed.json"
    shutil.copy(out / "speed.json", speed)
    no_cost = json.loads(speed.read_text())
    for row in no_cost["rows"]:
        row.pop("accuracy_delta", None)
        row.pop("label_agreement", None)
    speed.write_text(json.dumps({**no_cost, "quality": None}))
    code = main(["bench-quality", str(tiny_llama_dir), "--n", "12", "--batch-size", "4", "--pack-tokens", "64",
                 "--variants", *VARIANTS, "--data", str(shared_data / "tfns" / "sent_valid.csv"),
                 "--out", str(tmp_path / "q"), "--apply", str(speed)])
    assert code == 0
    applied = json.loads(speed.read_text())
    assert applied["quality"]["model"] == str(tiny_llama_dir) and applied["quality"]["n"] == 12
    cost = json.loads((tmp_path / "q" / "quality.json").read_text())["variants"]
    rows3 = [r for r in applied["rows"] if r["scheme"] == "3" and r["mode"] == "score"]
    assert all(r["accuracy_delta"] == cost[r["variant"]]["accuracy_delta"] for r in rows3)
    admissible = [r for r in rows3 if not r["config"].startswith("best (") and " @ " not in r["config"]
                  and (r["exact"] or r["accuracy_delta"] >= -0.005)]
    best = [r for r in rows3 if r["config"].startswith("best (")]
    assert len(best) == 1 and best[0]["items_per_second"] == max(r["items_per_second"] for r in admissible)
    assert (tmp_path / "speed.md").read_text().strip() == format_table(applied)
