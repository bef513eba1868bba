"""build/bench/quality_table.py: the comparable dev metric (TFNS + FPB rows only), and which runs make the
pruning-cost table (the reference run's training at other prune ratios), on results files written here."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from finsent.hub.card import read_pruning_cost

TFNS, FPB, HEADLINES = "../shared/data/tfns/sent_train.csv", "../shared/data/fpb/train.jsonl", \
    "data/finsent-headlines/train.jsonl"
PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def qt(bench_script):
    return bench_script("quality_table")


def recipe(ratio=0.4, lr=2e-3, method="lora", headlines=False) -> dict:
    data = [{"path": TFNS, "schema": "tfns", "scheme": None}, {"path": FPB, "schema": "fpb", "scheme": None}]
    if headlines:
        data.append({"path": HEADLINES, "schema": "finsent", "scheme": "7"})
    return {"name": "smollm2-135m-fingpt", "description": "pruned 40 %",
            "model": {"base": "smollm2", "revision": None, "license": "apache-2.0"},
            "prune": {"enabled": True, "method": "ppm", "ratio": ratio, "expansion": None, "round_to": 1},
            "finetune": {"data": data, "lora_r": 8, "method": method, "learning_rate": lr, "epochs": 2.0,
                         "dev_fraction": 0.1, "dev_every": 250, "logging_steps": 10, "save_steps": 100,
                         "distill_from": None},
            "merge": {"dtype": "float16", "tolerance": 0.25},
            "eval": {"batch_size": 16}, "card": {"model_name": "FinSent-SmolLM2-135M-FinGPT", "shape_speed": None}}


def result(recipe_contents: dict, params: int, sources: dict, accuracy: float, *, pruned=True, items_s=28.8,
           seven=0.1402, cpu=None, wall=4470.0) -> dict:
    out = {"git_commit": "30cad0b395a4b8bee055bad6dc1fce050fc63a5a", "recipe_contents": recipe_contents,
           "model_params": params, "pruned": pruned, "resumed_from_step": 0,
           "selection": {"split": "dev: 0.1 of each training source", "metric": "dev accuracy"},
           "dev": {"n": sum(n for n, _ in sources.values()), "accuracy": accuracy, "macro_f1": 0.79,
                   "items_per_second": items_s,
                   "per_source": {p: {"n": n, "accuracy": a, "macro_f1": 0.7} for p, (n, a) in sources.items()}},
           "seven_class_test": {"n": 378, "accuracy": seven}, "tfns_validation": None,
           "training": {"epochs": 2.0}, "wall_seconds": wall, "peak_memory_mb": 8192.0}
    if cpu:
        out["cpu"] = cpu
    return out


def runs_table(text: str) -> list[str]:
    """quality.md's lines up to its second section (the builds of one setting)."""
    return text.split("\n### ")[0].splitlines()


@pytest.fixture
def results(tmp_path) -> Path:
    folder = tmp_path / "results"
    folder.mkdir()
    runs = {
        # the reference: 40 % pruned; 813 + 303 of 955 + 363 dev rows right
        "lora-r8-dev": result(recipe(), 102_685_248, {TFNS: (955, 0.8513), FPB: (363, 0.8347)}, 0.8467),
        # the same training unpruned (--no-prune keeps prune.ratio in the recipe), scoring the dev split more often
        "noprune": result({**recipe(), "finetune": {**recipe()["finetune"], "dev_every": 50}}, 134_515_008,
                          {TFNS: (955, 0.8618), FPB: (363, 0.8512)}, 0.8589, pruned=False, items_s=21.25,
                          seven=0.1455),
        # 60 % pruned, on a named CPU, with a card and description of its own and merged in float32 (not
        # training settings: the dev score is taken before the merge)
        "p60": result({**recipe(0.6), "description": "pruned 60 %", "merge": {"dtype": "float32", "tolerance": 0.25},
                       "card": {"model_name": "x", "pruning_cost": "build/bench/results/pruning_cost.json"}},
                      86_770_752, {TFNS: (955, 0.8209), FPB: (363, 0.8099)}, 0.8179, items_s=35.5,
                      cpu="Intel Xeon Platinum 8481C", wall=3600.0),
        # not the reference's training: 7-class headlines added (their rows join the dev split), another rate,
        # full fine-tuning
        "seven": result(recipe(headlines=True), 102_685_248,
                        {TFNS: (955, 0.8408), FPB: (363, 0.8292), HEADLINES: (38, 0.5)}, 0.8282),
        "lr1e-3": result(recipe(lr=1e-3), 102_685_248, {TFNS: (955, 0.8), FPB: (363, 0.8)}, 0.8),
        "full-p60": result(recipe(0.6, method="full"), 86_770_752, {TFNS: (955, 0.7), FPB: (363, 0.7)}, 0.7),
        # the tuned unpruned model, pruned by activations and recovered with distillation from itself
        "act-kd": result({**recipe(0.32), "model": {"base": "runs/bench-x-p0/merged"},
                          "prune": {**recipe(0.32)["prune"], "method": "act"},
                          "finetune": {**recipe()["finetune"], "distill_from": "runs/bench-x-p0/merged",
                                       "distill_alpha": 0.5}},
                         109_061_568, {TFNS: (955, 0.89), FPB: (363, 0.88)}, 0.8872),
    }
    for tag, data in runs.items():
        (folder / f"tfns_accuracy-{tag}.json").write_text(json.dumps(data))
    old = copy.deepcopy(runs["lora-r8-dev"])
    old["dev"] = None  # a run that chose settings on TFNS validation: in neither table
    (folder / "tfns_accuracy-old.json").write_text(json.dumps(old))
    return folder


def test_comparable_dev_counts_only_the_tfns_and_fpb_rows(qt, results):
    loaded = dict(qt.load(results))
    assert "old" not in loaded
    # (803 + 301) / 1318 right: the 19 of 38 headlines rows are left out (all sources: 1123 / 1356 = 0.8282)
    assert qt.comparable_dev(loaded["seven"]) == 0.8376
    assert qt.comparable_dev(loaded["lora-r8-dev"]) == 0.8467  # (813 + 303) / 1318, the run's own overall score
    assert qt.comparable_dev(loaded["noprune"]) == 0.8589  # (823 + 309) / 1318
    assert qt.per_source(loaded["seven"]) == {"tfns": {"n": 955, "accuracy": 0.8408},
                                              "fpb": {"n": 363, "accuracy": 0.8292},
                                              "finsent": {"n": 38, "accuracy": 0.5}}


def test_quality_table_sorts_by_size_then_the_comparable_metric(qt, results, capsys):
    qt.main(["--reference", "lora-r8-dev", "--results", str(results)])
    text = (results / "quality.md").read_text()
    lines = [line for line in runs_table(text) if line.startswith("| ") and not line.startswith("| run")]
    assert [line.split(" | ")[0][2:] for line in lines] == ["full-p60", "p60", "lr1e-3", "seven", "lora-r8-dev",
                                                            "act-kd", "noprune"]
    act = next(line for line in lines if line.startswith("| act-kd |"))
    assert "| LoRA r8 + KD (alpha 0.5), act-scored prune, from bench-x-p0 | 32% | 109.1M |" in act
    assert "| full-p60 | full, embeddings trained | 60% |" in lines[0]  # freeze_embeddings unset: false
    header = text.splitlines()[0]
    assert "| dev TFNS+FPB | dev acc (all sources) | dev macro-F1 | TFNS dev | FPB dev | finsent 7-class dev |" \
        in header
    seven = next(line for line in lines if line.startswith("| seven |"))
    assert "| 0.8376 | 0.8282 | 0.7900 | 0.8408 | 0.8292 | 0.5000 |" in seven
    noprune = next(line for line in lines if line.startswith("| noprune |"))
    assert "| LoRA r8 | 0% | 134.5M |" in noprune and "| 0.8589 | 0.8589 | 0.7900 | 0.8618 | 0.8512 | - |" in noprune
    assert (results / "quality.png").read_bytes().startswith(PNG)
    assert not [p for p in results.iterdir() if p.name.startswith(".")]  # no temporary file left


def test_pruning_cost_holds_the_reference_training_at_every_ratio(qt, results):
    qt.main(["--reference", "lora-r8-dev", "--results", str(results)])
    cost = json.loads((results / "pruning_cost.json").read_text())
    assert cost["reference"] == "lora-r8-dev" and cost["recipe"] == "smollm2-135m-fingpt"
    assert cost["source"].startswith("python build/bench/quality_table.py --reference lora-r8-dev --results ")
    assert "shared 2-core machine" in cost["timing"]
    assert cost["cpu"] == "Intel Xeon Platinum 8481C"
    assert [(r["run"], r["removed_share"]) for r in cost["rows"]] == [("noprune", 0.0), ("lora-r8-dev", 0.4),
                                                                      ("p60", 0.6)]
    noprune, ref, p60 = cost["rows"]
    assert noprune == {"run": "noprune", "removed_share": 0.0, "pruned": False, "params": 134_515_008,
                       "fp16_mb": 269.0, "dev_accuracy": 0.8589, "dev_n": 1318, "tfns_dev": 0.8618,
                       "fpb_dev": 0.8512, "finsent_dev": None, "seven_class_test": 0.1455, "items_per_second": 21.25,
                       "wall_minutes": 74.5, "resumed_from_step": 0, "commit": "30cad0b3", "cpu": None,
                       "device": None}
    assert (ref["params"], ref["fp16_mb"], ref["dev_accuracy"]) == (102_685_248, 205.4, 0.8467)
    assert (p60["fp16_mb"], p60["dev_accuracy"], p60["items_per_second"], p60["wall_minutes"], p60["cpu"],
            p60["device"]) == (173.5, 0.8179, 35.5, 60.0, "Intel Xeon Platinum 8481C", "Intel Xeon Platinum 8481C")
    png = results / "pruning_cost.png"
    assert png.read_bytes().startswith(PNG)
    # what the card reads: the schema holds, and the plot beside it is found
    assert read_pruning_cost(results / "pruning_cost.json")["plot"] == png


def test_another_reference_and_a_missing_one(qt, results):
    qt.main(["--results", str(results), "--reference", "seven"])
    cost = json.loads((results / "pruning_cost.json").read_text())
    assert [r["run"] for r in cost["rows"]] == ["seven"] and cost["rows"][0]["finsent_dev"] == 0.5
    assert cost["rows"][0]["dev_accuracy"] == 0.8376
    with pytest.raises(SystemExit, match="reference run 'nope' has no dev score here"):
        qt.main(["--results", str(results), "--reference", "nope"])
    with pytest.raises(SystemExit, match="reference run 'old' has no dev score here"):
        qt.main(["--results", str(results), "--reference", "old"])


def test_method_names_a_trimmed_vocabulary(qt, results):
    run = copy.deepcopy(dict(qt.load(results))["act-kd"])
    run["recipe_contents"]["prune"]["vocab_first"] = 8192
    (row,) = qt.runs([("v", run)])
    assert row["method"] == ("LoRA r8 + KD (alpha 0.5), act-scored prune, vocabulary trimmed (first 8192 ids + "
                             "training tokens), from bench-x-p0")
    # The same prune with no training afterwards (finetune.enabled: false): no LoRA, no KD, no epochs.
    run["recipe_contents"]["finetune"]["enabled"] = False
    run["training"] = {}
    (row,) = qt.runs([("plain", run)])
    assert row["method"] == ("no training, act-scored prune, vocabulary trimmed (first 8192 ids + training tokens), "
                             "from bench-x-p0")
    assert row["epochs"] is None
    run["recipe_contents"]["prune"].update(vocab_first=0, vocab_min_count=3)
    (row,) = qt.runs([("rare", run)])
    assert row["method"] == ("no training, act-scored prune, vocabulary trimmed (first 0 ids + training tokens seen "
                             "3+ times), from bench-x-p0")


def test_a_field_added_later_counts_at_its_default(qt, results):
    # A run made after PruneSection gained calibration_rows / vocab_first / vocab_min_count records them; the
    # reference, made before, does not. At their defaults it is the same training and joins the curve; with a
    # trimmed vocabulary it is another training and stays out.
    later = result(recipe(0.2), 118_582_272, {TFNS: (955, 0.85), FPB: (363, 0.84)}, 0.8473)
    later["recipe_contents"]["prune"].update(calibration_rows=128, vocab_first=None, vocab_min_count=1)
    (results / "tfns_accuracy-p20.json").write_text(json.dumps(later))
    trimmed = copy.deepcopy(later)
    trimmed["recipe_contents"]["prune"].update(vocab_first=0, vocab_min_count=3)
    (results / "tfns_accuracy-p20-trimmed.json").write_text(json.dumps(trimmed))
    qt.main(["--reference", "lora-r8-dev", "--results", str(results)])
    cost = json.loads((results / "pruning_cost.json").read_text())
    assert [(r["run"], r["removed_share"]) for r in cost["rows"]] == [("noprune", 0.0), ("p20", 0.2),
                                                                      ("lora-r8-dev", 0.4), ("p60", 0.6)]
    assert qt.section_defaults("prune")["vocab_min_count"] == 1
    assert "q_proj" in qt.section_defaults("finetune")["target_modules"]


def test_each_run_names_where_it_trained(qt, results):
    """A run that recorded its device (a GPU) shows it, in the table and in its pruning-cost row; older runs show
    their CPU, or '-' when they recorded neither."""
    gpu = result(recipe(0.5), 94_701_888, {TFNS: (955, 0.83), FPB: (363, 0.82)}, 0.8272, items_s=120.0,
                 cpu="Intel Xeon Platinum 8480+", wall=480.0)
    gpu["device"] = "GPU NVIDIA H200"
    gpu["training"]["peak_memory_mb"] = 9609.1  # torch's peak allocation on the GPU; 8192 MB: the host process
    (results / "tfns_accuracy-h200-p50.json").write_text(json.dumps(gpu))
    qt.main(["--reference", "lora-r8-dev", "--results", str(results)])
    lines = {line.split(" | ")[0][2:]: line for line in runs_table((results / "quality.md").read_text())
             if line.startswith("| ") and not line.startswith("| run")}
    assert lines["h200-p50"].endswith("| 8 min | 8.0 GB (GPU 9.4 GB) | GPU NVIDIA H200 | 30cad0b3 |")
    assert lines["p60"].endswith("| Intel Xeon Platinum 8481C | 30cad0b3 |")
    assert lines["noprune"].endswith("| - | 30cad0b3 |")
    cost = json.loads((results / "pruning_cost.json").read_text())
    row = next(r for r in cost["rows"] if r["run"] == "h200-p50")
    assert (row["removed_share"], row["device"], row["cpu"]) == (0.5, "GPU NVIDIA H200", "Intel Xeon Platinum 8480+")
    assert cost["devices"] == ["GPU NVIDIA H200", "Intel Xeon Platinum 8481C"]
    assert cost["timing"].startswith("each run was timed where it trained")


def test_builds_of_one_setting_on_one_dev_split_show_their_spread(qt, results):
    """Runs that differ only in finetune.seed, with finetune.dev_seed holding the split, are one setting built
    several times; a run whose seed also moved the split is another measurement and stays out."""
    qt.main(["--reference", "lora-r8-dev", "--results", str(results)])
    assert "No setting has been built twice yet." in (results / "quality.md").read_text()
    for seed, dev_seed, right in ((43, 42, (800, 300)), (44, 42, (830, 306)), (45, None, (700, 300))):
        run = result(recipe(), 102_685_248, {TFNS: (955, round(right[0] / 955, 4)),
                                             FPB: (363, round(right[1] / 363, 4))}, 0.8)
        run["recipe_contents"]["finetune"].update(seed=seed, dev_seed=dev_seed, dev_every=100)
        (results / f"tfns_accuracy-seed{seed}.json").write_text(json.dumps(run))
    qt.main(["--reference", "lora-r8-dev", "--results", str(results)])
    loaded = qt.load(results)
    rows = qt.builds(loaded, qt.runs(loaded))
    # lora-r8-dev (seed 42 by default): 813 + 303 = 1116 right of 1318; seed 43: 1100; seed 44: 1136
    assert rows == [{"setting": "LoRA r8, 40% pruned, lr 0.002", "runs": ["lora-r8-dev", "seed43", "seed44"],
                     "seeds": [42, 43, 44], "mean": 0.8477, "sd": 0.0137, "min": 0.8346, "max": 0.8619}]
    text = (results / "quality.md").read_text()
    assert ("| LoRA r8, 40% pruned, lr 0.002 | lora-r8-dev, seed43, seed44 | 42, 43, 44 | 0.8477 | 0.0137 | "
            "0.8346 - 0.8619 |") in text.split("### Builds of one setting")[1]
    cost = json.loads((results / "pruning_cost.json").read_text())
    assert "seed43" not in [r["run"] for r in cost["rows"]]  # another seed is another training for the curve


def test_averaged_runs_show_their_last_weights_beside_the_mean(qt, results):
    """A run with finetune.average_from scores its last weights and the mean in one training: quality.md puts the
    two TFNS + FPB dev scores side by side, and the method says how the weights were made."""
    run = result(recipe(), 102_685_248, {TFNS: (955, 0.8513), FPB: (363, 0.8430)}, 0.85)
    run["recipe_contents"]["finetune"]["average_from"] = 0.5
    run["weight_average"] = {"from": 0.5, "first_step": 410, "steps_averaged": 409, "dev_last_weights": {
        "n": 1318, "accuracy": 0.84, "per_source": {TFNS: {"n": 955, "accuracy": 0.8408},
                                                    FPB: {"n": 363, "accuracy": 0.8347}}}}
    (results / "tfns_accuracy-avg.json").write_text(json.dumps(run))
    qt.main(["--reference", "lora-r8-dev", "--results", str(results)])
    loaded = qt.load(results)
    # last weights: 803 + 303 = 1106 of 1318; the mean: 813 + 306 = 1119
    assert qt.averaged(loaded) == [{"run": "avg", "from": 0.5, "steps": 409, "last": 0.8392, "mean": 0.849,
                                    "n": 1318, "rows": 13}]
    text = (results / "quality.md").read_text()
    assert "| avg | 50% | 409 | 0.8392 | 0.8490 | +13 of 1318 |" in text.split("### Weights averaged")[1]
    assert "| avg | LoRA r8, weights averaged from 50% of the run | 40% |" in text
    cost = json.loads((results / "pruning_cost.json").read_text())
    assert "avg" not in [r["run"] for r in cost["rows"]]  # averaged weights are another training for the curve


def test_method_names_a_soup_and_an_ensemble_teacher(qt, results):
    run = copy.deepcopy(dict(qt.load(results))["full-p60"])
    run["recipe_contents"]["finetune"].update(seeds=[42, 43, 44], soup="greedy")
    (row,) = qt.runs([("soup", run)])
    assert row["method"] == "full, embeddings trained, greedy soup of 3 seeds"
    run = copy.deepcopy(dict(qt.load(results))["act-kd"])
    run["recipe_contents"]["finetune"]["distill_from"] = ["runs/a/merged", "runs/b/merged"]
    (row,) = qt.runs([("ensemble", run)])
    assert row["method"] == "LoRA r8 + KD from 2 teachers (alpha 0.5), act-scored prune, from bench-x-p0"


def dev_of(right_tfns: int, right_fpb: int) -> dict:
    """A dev score with ``right_tfns`` of 955 TFNS rows and ``right_fpb`` of 363 FPB rows right."""
    return {"n": 1318, "accuracy": round((right_tfns + right_fpb) / 1318, 4), "macro_f1": 0.8,
            "per_source": {TFNS: {"n": 955, "accuracy": round(right_tfns / 955, 4)},
                           FPB: {"n": 363, "accuracy": round(right_fpb / 363, 4)}}}


def test_soups_and_ensemble_teachers_show_each_part_beside_the_model(qt, results):
    """A soup lists its members' dev TFNS+FPB from its own report; an ensemble student finds its teachers among the
    runs here (a soup member's folder, another run's merged folder) and shows a teacher trained elsewhere unscored."""
    members = qt.ROOT / "runs" / "bench-smollm2-135m-fingpt-soup" / "seeds"
    soup = result(recipe(method="full"), 102_685_248, {TFNS: (955, 0.8796), FPB: (363, 0.854)}, 0.8725)
    soup["recipe_contents"]["finetune"].update(seeds=[42, 43], soup="greedy")
    soup["training"].update(seconds=3000.0, peak_memory_mb=3923.4)
    soup["soup"] = {"method": "greedy", "chosen": [43, 42], "members": [
        {"seed": 42, "folder": str(members / "seed-42"), "dev": dev_of(800, 300)},
        {"seed": 43, "folder": str(members / "seed-43"), "dev": dev_of(830, 306)}]}
    student = result(recipe(method="full"), 102_685_248, {TFNS: (955, 0.8796), FPB: (363, 0.843)}, 0.8695)
    student["recipe_contents"]["finetune"].update(distill_alpha=0.5, distill_from=[
        "runs/bench-smollm2-135m-fingpt-soup/seeds/seed-42", "runs/bench-smollm2-135m-fingpt-lora-r8-dev/merged",
        "runs/elsewhere/merged"])
    student["training"].update(seconds=4500.0, peak_memory_mb=4096.0)
    again = copy.deepcopy(soup)  # a later soup reusing seed 42: the teacher keeps the name of the run that trained it
    again["soup"]["members"] = [{**soup["soup"]["members"][0], "reused": True}]
    for tag, run in (("soup", soup), ("student", student), ("again", again)):
        (results / f"tfns_accuracy-{tag}.json").write_text(json.dumps(run))
    qt.main(["--reference", "lora-r8-dev", "--results", str(results)])
    section = (results / "quality.md").read_text().split("### Several trainings in one model")[1]
    # members: 1100 and 1136 of 1318 right; the soup 1150, 14 rows over its best member
    assert ("| soup | greedy soup | seed 42 0.8346, seed 43 0.8619 | [43, 42] | 0.8619 | 0.8725 | +1.06 pt "
            "| 50.0 min | 3,923 MiB |") in section
    # teachers: the soup's seed 42 (0.8346), lora-r8-dev (0.8467) and one no run here trained; the student 1146
    assert ("| student | ensemble teacher (alpha 0.5, T 1) | soup seed 42 0.8346, lora-r8-dev 0.8467, "
            "runs/elsewhere/merged - | - | 0.8467 | 0.8695 | +2.28 pt | 75.0 min | 4,096 MiB |") in section
