"""The quality recipes as a chain: the unpruned teacher's release is the student's base and teacher (trimmed
vocabulary, act prune, distillation from the untrimmed teacher), run through `finsent release` on the real
SmolLM2 with a few steps and a few rows of each file; and the same student with no training at all."""

import json

from checkout import REPO
from safetensors.torch import load_file
from transformers import AutoConfig, AutoTokenizer

from finsent.build.pruning import texts_sha256
from finsent.cli import main

DATA = ('finetune.data=[{path: ../shared/data/tfns/sent_train.csv, schema: tfns, limit: 40}, '
        '{path: ../shared/data/fpb/train.jsonl, schema: fpb, limit: 40}, '
        '{path: data/finsent-headlines/train.jsonl, schema: finsent, scheme: "7", limit: 40}]')
SMALL = ["--set", "finetune.max_steps=2", "--set", "finetune.batch_size=4", "--set", DATA,
         "--set", "finetune.dev_every=0", "--set", "prune.calibration_rows=16",
         "--set", "eval.benchmarks=[{name: finsent, path: data/finsent-headlines/test.jsonl, scheme: '7', limit: 8}]"]


def test_teacher_release_feeds_the_act_pruned_distilled_student(tmp_path, monkeypatch, capsys, smollm2_dir):
    monkeypatch.chdir(REPO)  # recipe data paths are relative to the repository root
    dirs = ["--runs-dir", str(tmp_path / "runs"), "--releases-dir", str(tmp_path / "releases")]
    teacher = tmp_path / "releases" / "smollm2-135m-fingpt-teacher"
    assert main(["release", "build/recipes/smollm2-135m-fingpt-teacher.yaml", *SMALL, *dirs]) == 0
    assert AutoConfig.from_pretrained(teacher).intermediate_size == 1536  # not pruned
    assert not (tmp_path / "runs" / "smollm2-135m-fingpt-teacher" / "pruned").exists()

    chain = ["--set", f"model.base={teacher}", "--set", f"finetune.distill_from={teacher}"]
    recover = ["--set", "finetune.enabled=true"]  # the recipe's recovery switch, off by default
    assert main(["release", "build/recipes/smollm2-109m-fingpt.yaml", *SMALL, *chain, *recover, *dirs]) == 0
    student = tmp_path / "releases" / "smollm2-109m-fingpt"
    config = AutoConfig.from_pretrained(student)
    assert config.intermediate_size == 1477  # 1536 - int(0.0385 x 1536)
    pruning = json.loads((student / "reports" / "pruning.json").read_text())
    # The vocabulary keeps the tokens seen 3+ times in these few training rows (the full data keeps 11,821), the
    # one-character tokens and the special ones; every other parameter is the 3.85 %-pruned SmolLM2's: 30 layers x
    # 1,477 neurons x 3 x 576 for the MLPs, 30 x (576 x 576 x 2 + 576 x 192 x 2) for the attention, 61 x 576 for
    # the norms.
    vocab = pruning["vocab"]
    assert (vocab["first"], vocab["min_count"], vocab["before"]) == (0, 3, 49152)
    assert vocab["after"] == config.vocab_size < 2_000
    assert len(AutoTokenizer.from_pretrained(student)) == vocab["after"]
    body = 30 * 1477 * 3 * 576 + 30 * (576 * 576 * 2 + 576 * 192 * 2) + 61 * 576
    assert (pruning["method"], pruning["params_after"]) == ("act", body + vocab["after"] * 576)
    assert pruning["calibration"]["texts"] == 16 and len(pruning["calibration"]["sha256"]) == 64
    assert pruning["calibration"]["sha256"] != texts_sha256([])
    training = json.loads((student / "reports" / "training.json").read_text())
    assert training["distill"] == {"from": str(teacher), "alpha": 0.9, "temperature": 1.0}
    assert training["steps"] == 2 and training["dev"]["n"] > 0  # the dev rows held out of both models

    # The same student with no training: the trimmed, pruned teacher, cast to float16, is the release.
    plain = ["--set", "finetune.enabled=false", "--runs-dir", str(tmp_path / "runs-plain"),
             "--releases-dir", str(tmp_path / "releases-plain")]
    assert main(["release", "build/recipes/smollm2-109m-fingpt.yaml", *SMALL, *chain, *plain]) == 0
    run, release = tmp_path / "runs-plain" / "smollm2-109m-fingpt", tmp_path / "releases-plain" / "smollm2-109m-fingpt"
    assert not (run / "adapter").exists() and (run / "pruned" / "pruning.json").is_file()
    reports = {"pruning.json", "merge.json", "recipe.yaml", "build.json"}
    assert {p.name for p in (release / "reports").iterdir()} == reports
    assert json.loads((release / "reports" / "merge.json").read_text())["dtype"] == "float16"
    pruned, shipped = load_file(run / "pruned" / "model.safetensors"), load_file(release / "model.safetensors")
    assert set(shipped) == set(pruned)
    assert all(shipped[k].dtype.is_floating_point and shipped[k].equal(pruned[k].half()) for k in pruned)
    assert "None in this release: the pruned weights are used as they are" in (release / "README.md").read_text()
    # Run again: prune and merge are up to date (nothing rewritten), with no adapter to look for.
    built = (release / "model.safetensors").stat().st_mtime_ns
    assert main(["release", "build/recipes/smollm2-109m-fingpt.yaml", *SMALL, *chain, *plain]) == 0
    assert (release / "model.safetensors").stat().st_mtime_ns == built


def test_direct_recipe_trims_and_prunes_the_base_then_tunes_every_weight(tmp_path, monkeypatch, smollm2_dir):
    monkeypatch.chdir(REPO)
    dirs = ["--runs-dir", str(tmp_path / "runs"), "--releases-dir", str(tmp_path / "releases")]
    # Merged in float32: two steps at the recipe's lr 2e-4 leave a model whose float16 copy drifts past
    # merge.tolerance (0.27 log-prob measured); the full 818-step training's float16 merge reads 0.04.
    exact = ["--set", "merge.dtype=float32"]
    assert main(["release", "build/recipes/smollm2-109m-fingpt-direct.yaml", *SMALL, *exact, *dirs]) == 0
    release = tmp_path / "releases" / "smollm2-109m-fingpt-direct"
    config = AutoConfig.from_pretrained(release)
    assert config.intermediate_size == 1477
    pruning = json.loads((release / "reports" / "pruning.json").read_text())
    assert (pruning["method"], pruning["vocab"]["first"], pruning["vocab"]["min_count"]) == ("act", 0, 3)
    assert pruning["base"].endswith("smollm2-135m-instruct")  # the embedded base, not a tuned teacher
    assert config.vocab_size == pruning["vocab"]["after"] < 2_000
    training = json.loads((release / "reports" / "training.json").read_text())
    assert training["steps"] == 2 and training["dev"]["n"] > 0
    # full fine-tuning with the trimmed embedding frozen: every weight but the tied embedding trains
    assert training["trainable_params"] == pruning["params_after"] - pruning["vocab"]["after"] * 576


def test_soup_recipe_releases_the_mean_of_its_two_seeds(tmp_path, monkeypatch, smollm2_dir):
    """The quality recipe trains one member per seed from one pruned start and ships their weights' exact mean."""
    monkeypatch.chdir(REPO)
    dirs = ["--runs-dir", str(tmp_path / "runs"), "--releases-dir", str(tmp_path / "releases")]
    exact = ["--set", "merge.dtype=float32"]  # as the direct recipe's test: two steps drift past the float16 check
    assert main(["release", "build/recipes/smollm2-109m-fingpt-soup.yaml", *SMALL, *exact, *dirs]) == 0
    run, release = tmp_path / "runs" / "smollm2-109m-fingpt-soup", tmp_path / "releases" / "smollm2-109m-fingpt-soup"
    training = json.loads((release / "reports" / "training.json").read_text())
    assert [m["seed"] for m in training["soup"]["members"]] == training["soup"]["chosen"] == [42, 43]
    first, second = (load_file(run / "seeds" / f"seed-{seed}" / "model.safetensors") for seed in (42, 43))
    assert any(not first[k].equal(second[k]) for k in first)  # the seeds saw other rows
    shipped = load_file(release / "model.safetensors")
    assert set(shipped) == set(first)
    for key, value in shipped.items():
        assert value.equal(((first[key].double() + second[key].double()) / 2).to(first[key].dtype)), key
