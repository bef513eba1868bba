"""`finsent eval` on the real SmolLM2: a TFNS slice in both modes, against the shared results contract."""

from __future__ import annotations

from eval_checks import check_run

from finsent.core.labels import SCHEMES, parse_answer
from finsent.core.recipes import EvalBenchmark
from finsent.evaluation.benchmarks import load_benchmark
from finsent.evaluation.runs import run_eval
from finsent.evaluation.summary import write_summary


def test_real_smollm2_on_a_tfns_slice_in_both_modes(tmp_path, smollm2_dir, shared_data):
    out = tmp_path / "eval"
    bench = EvalBenchmark("tfns", str(shared_data / "tfns" / "sent_valid.csv"), "3", 40)
    results = run_eval(smollm2_dir, [bench], ["score", "generate"], out, batch_size=8, progress=False)
    data = load_benchmark("tfns", bench.path, limit=40)
    score = check_run(out, results[0], data, "score")
    generated = check_run(out, results[1], data, "generate")
    assert all(x["pred"] in SCHEMES["3"] for x in score)
    # Each generated answer is either a parsed label or counted unparseable, never coerced to neutral.
    assert all(x["pred"] == parse_answer(x["answer"], "3") for x in generated)
    summary = write_summary(out).read_text()
    assert "| TFNS | 3 | score | 40 |" in summary and "| TFNS | 3 | generate | 40 |" in summary
