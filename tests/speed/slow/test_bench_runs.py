"""``finsent bench`` and ``bench-quality`` run on the tiny random Llama: a well-formed speed.json, table and plot,
quality costs applied later (no timing assertions)."""

from __future__ import annotations

import json

import pytest

from finsent.cli import main
from finsent.speed.bench import run_bench
from finsent.speed.report import format_table

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
