"""``finsent card``: the golden render, the model-index round trip, refusals, and the card's code that runs.

Regenerate the golden file after an intended change of MODEL_CARD.md or card.py:
    FINSENT_UPDATE_GOLDEN=1 .venv/bin/pytest tests/hub/test_card.py -k golden
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
from checkout import REPO
from huggingface_hub import ModelCard
from release_factory import GOLDEN_CARD, add_exports, pruning_cost_report, write_pruning_cost, write_reports

from finsent.core.prompts import instruction, prompt_text
from finsent.core.recipes import load_recipe
from finsent.hub.card import CardError, render_card


@pytest.fixture
def release(tmp_path) -> Path:
    return write_reports(tmp_path / "release")


def recipe_of(release: Path, **overrides):
    return load_recipe(release / "reports" / "recipe.yaml", overrides)


def test_card_matches_golden(release):
    add_exports(release)
    text = render_card(recipe_of(release), release)
    if os.environ.get("FINSENT_UPDATE_GOLDEN"):
        GOLDEN_CARD.parent.mkdir(exist_ok=True)
        GOLDEN_CARD.write_text(text)
    assert text == GOLDEN_CARD.read_text()
    assert (release / "README.md").read_text() == text


def test_run_anywhere_names_only_what_the_release_carries(release):
    text = render_card(recipe_of(release), release)
    assert "## Run it anywhere" not in text and ".gguf" not in text  # no exports, no pipeline file
    add_exports(release, onnx=False, agreement=(1.0, None))
    text = render_card(recipe_of(release), release, repo_id="bob/FinSent")
    anywhere = text.split("## Run it anywhere")[1].split("## Evaluation")[0]
    assert 'pipeline("text-classification", model="bob/FinSent", trust_remote_code=True)' in anywhere
    assert "| `llama-finsent-s-F16.gguf` | llama.cpp, Ollama | float16 | 1,834.0 MB | 100.0 % |" in anywhere
    assert "| `llama-finsent-s-Q8_0.gguf` | llama.cpp, Ollama | 8-bit (q8_0) | 975.0 MB | not measured |" in anywhere
    # the commands use the smallest GGUF, from this repo
    assert "llama-server --hf-repo bob/FinSent --hf-file llama-finsent-s-Q8_0.gguf" in anywhere
    assert "hf download bob/FinSent llama-finsent-s-Q8_0.gguf" in anywhere
    assert "FROM ./llama-finsent-s-Q8_0.gguf\nTEMPLATE \"\"\"Instruction: What is the sentiment" in anywhere
    assert "Input: {{ .Prompt }}\nAnswer:\"\"\"" in anywhere  # Ollama's placeholder, not a Jinja one
    assert "onnxruntime" not in anywhere.split("### Exports")[1] and "onnx/" not in anywhere
    assert "on the first 200 texts of\n`sent_valid.csv`" in anywhere
    # the server request is the prompt as JSON; the shell prompt a $'...' word: both the exact training prompt
    prompt = prompt_text(instruction("3", "news"), "Acme Corp beats third-quarter estimates and raises its "
                                                   "full-year guidance")
    request = re.search(r"completion -d '(.*)'", anywhere).group(1)
    assert json.loads(request) == {"prompt": prompt, "n_predict": 3, "temperature": 0, "stop": ["\n"]}
    assert "-p $'" + prompt.replace("\n", "\\n") + "'" in anywhere
    (release / "llama-finsent-s-F16.gguf").unlink()
    with pytest.raises(CardError, match="llama-finsent-s-F16.gguf is listed in reports/exports.json but missing"):
        render_card(recipe_of(release), release)


def test_model_index_round_trips_through_model_card_load(release):
    render_card(recipe_of(release), release)
    card = ModelCard.load(release / "README.md")
    assert card.data.license == "llama3.2" and card.data.base_model == "meta-llama/Llama-3.2-1B"
    assert card.data.pipeline_tag == "text-generation" and card.data.library_name == "transformers"
    assert card.data.model_name == "Llama-FinSent-S"
    loaded = {(e.dataset_type, e.dataset_split, e.metric_name, e.metric_value) for e in card.data.eval_results}
    expected = set()
    for path in (release / "eval").glob("*-*-*.json"):
        r = json.loads(path.read_text())
        how = f"{r['scheme']}-class, {'label scoring' if r['mode'] == 'score' else 'generation'}"
        for name, key in (("Accuracy", "accuracy"), ("Macro F1", "macro_f1"), ("Weighted F1", "weighted_f1")):
            expected.add((r["dataset"], r["split"], f"{name} ({how})", round(r["metrics"][key], 4)))
    assert loaded == expected and len(expected) == 12


def test_card_shows_the_prompts_of_the_prompts_module_and_the_sizes(release):
    text = render_card(recipe_of(release), release)
    assert f"```text\n{instruction('3', 'news')}\n```" in text
    assert f"```text\n{instruction('7', 'news')}\n```" in text
    assert prompt_text(instruction("7", "news"), "Shares of Acme fell 12 % after the company cut its outlook.") in text
    assert "| GLU neurons per layer | 8,192 | 4,916 |" in text
    assert "| expansion beyond the hidden size | 300.0 % | 140.0 % |" in text
    assert "| TFNS | `zeroshot/twitter-financial-news-sentiment` (validation) | 2,388 | 3 | label scoring |" in text
    assert re.search(r"\| GPT-4 \|.*\| reported elsewhere: AI4Finance-Foundation/FinGPT \|", text)
    # FPB was scored on a 400-row sample: flagged as not comparable with the published full-test figures
    assert "| **Llama-FinSent-S** (this release, label scoring) | 0.784 † | – | 0.851 | – | measured here |" in text


def test_usage_code_loads_the_given_repo_or_else_the_folder(release):
    text = render_card(recipe_of(release), release, repo_id="bob/FinSent")
    assert 'model_id = "bob/FinSent"' in text and 'FinSentClassifier.from_pretrained("bob/FinSent")' in text
    text = render_card(recipe_of(release, **{"publish.repo_id": None}), release)
    assert f'model_id = "{release}"' in text


@pytest.mark.parametrize("remove, message", [
    ("reports/pruning.json", r"reports/pruning.json is missing \(it is written by `finsent prune`\)"),
    ("reports/training.json", r"reports/training.json is missing"),
    ("eval/speed.json", r"eval/speed.json is missing \(it is written by `finsent bench`\)"),
    ("eval/*-*-*.json", r"no eval results in .*eval"),
])
def test_missing_report_stops_the_render(release, remove, message):
    for path in release.glob(remove):
        path.unlink()
    with pytest.raises(CardError, match=message):
        render_card(recipe_of(release), release)
    assert not (release / "README.md").exists()


def test_missing_metric_or_key_names_file_and_key(release):
    path = release / "eval" / "tfns-3-score.json"
    original = path.read_text()
    result = json.loads(original)
    del result["metrics"]["weighted_f1"]
    path.write_text(json.dumps(result))
    with pytest.raises(CardError, match=r"tfns-3-score.json: metrics: missing weighted_f1"):
        render_card(recipe_of(release), release)
    path.write_text(original)
    training = json.loads((release / "reports" / "training.json").read_text())
    training["lora"].pop("r")
    (release / "reports" / "training.json").write_text(json.dumps(training))
    with pytest.raises(CardError, match=r"training.json: lora: missing r"):
        render_card(recipe_of(release), release)


def test_unpruned_release_needs_no_pruning_report(release):
    (release / "reports" / "pruning.json").unlink()
    text = render_card(recipe_of(release, **{"prune.enabled": False, "prune.ratio": None}), release)
    assert "### Pruning" not in text and "### Fine-tuning" in text
    assert "built from\n`meta-llama/Llama-3.2-1B` by LoRA fine-tuning on\n`FinGPT/fingpt-sentiment-train`" in text
    # fully fine-tuned (no adapter): the intro and the table say so
    path = release / "reports" / "training.json"
    training = json.loads(path.read_text())
    path.write_text(json.dumps({**training, "lora": None, "method": "full", "freeze_embeddings": True}))
    text = render_card(recipe_of(release, **{"prune.enabled": False, "prune.ratio": None}), release)
    assert ("built from\n`meta-llama/Llama-3.2-1B` by fine-tuning every weight but the token embeddings on\n"
            "`FinGPT/fingpt-sentiment-train`, so the result\nloads") in text
    assert "Every weight of the model was fine-tuned (the token embeddings kept frozen)" in text
    made = text.split("Recipe:")[0] + text.split("### Fine-tuning")[1].split("## Prompts")[0]
    assert "LoRA" not in made and "adapter" not in made


def test_untrained_release_needs_no_training_report_and_says_so(release):
    (release / "reports" / "training.json").unlink()
    pruning = json.loads((release / "reports" / "pruning.json").read_text())
    pruning["calibration"] = {"texts": 16, "sha256": "0" * 64}  # an act prune read training rows
    (release / "reports" / "pruning.json").write_text(json.dumps(pruning))
    recipe = recipe_of(release, **{"finetune.enabled": False})
    text = render_card(recipe, release)
    fine_tuning = text.split("### Fine-tuning")[1].split("## Prompts")[0]
    assert fine_tuning.startswith("\n\nNone in this release: the pruned weights are used as they are")
    assert f"Rows of `{recipe.finetune.data[0].path}` were read\nonly to choose what the pruning kept." in fine_tuning
    assert "| learning rate" not in text and "LoRA fine-tuning on" not in text
    assert "structurally pruned\nand no training after that" in text
    with pytest.raises(CardError, match="training.json"):  # a trained recipe still needs its report
        render_card(recipe_of(release), release)


def test_card_shows_the_shape_speed_table_and_refuses_a_missing_one(release, tmp_path):
    shape = json.loads((release / "eval" / "speed.json").read_text())
    shape.update(shape="llama-finsent-s", device="CPU AMD EPYC 7B13, 2 cores")
    shape["rows"][0].update(config="int8 b1", dtype="int8 dynamic", items_per_second=3.125, speedup_vs_card=21.7)
    path = tmp_path / "shape-speed.json"
    path.write_text(json.dumps(shape))
    text = render_card(recipe_of(release, **{"card.shape_speed": str(path)}), release)
    own, shaped = text.split("### This model's shape on a small CPU")
    assert "## Speed and size" in own and "| score b16 | float32 | score | 3 | 16 | 2 | 2.500 |" in own
    assert "`finsent bench --shape llama-finsent-s`" in shaped and "on CPU AMD EPYC 7B13, 2 cores" in shaped
    assert "| int8 b1 | int8 dynamic | score | 3 | 16 | 2 | 3.125 | 6400.0 ms | 6900.0 ms | 4200.0 MB | 21.7x |" \
        in shaped
    # without a release speed.json (eval.speed off), the section still opens with its heading
    text = render_card(recipe_of(release, **{"card.shape_speed": str(path), "eval.speed": False}), release)
    assert "## Speed and size\n\n### This model's shape on a small CPU" in text and "| score b16 |" not in text
    path.unlink()
    with pytest.raises(CardError, match=r"shape-speed.json is missing \(it is written by `finsent bench --shape`\)"):
        render_card(recipe_of(release, **{"card.shape_speed": str(path)}), release)


def test_template_using_an_unknown_value_fails(release, tmp_path):
    bad = tmp_path / "card.md"
    bad.write_text("---\n{{ card_data }}\n---\n{{ pruning.no_such_field }}\n")
    with pytest.raises(CardError, match="the template uses something the reports do not provide"):
        render_card(recipe_of(release), release, template=bad)


def test_cli_writes_the_card(release, capsys):
    from finsent.cli import main

    assert main(["card", str(release)]) == 0
    assert capsys.readouterr().out.strip() == str(release / "README.md")
    (release / "eval" / "speed.json").unlink()
    assert main(["card", str(release)]) == 2
    assert "eval/speed.json is missing" in capsys.readouterr().err


def test_card_without_hub_datasets_names_the_training_files(release):
    """A recipe trained on local files only (the embedded default) names them instead of a Hub dataset."""
    text = render_card(recipe_of(release, **{"card.datasets": []}), release)
    training = json.loads((release / "reports" / "training.json").read_text())
    sentence = re.search(r"LoRA fine-tuning on\n(.*?), and merging", text, re.S).group(1)
    assert sentence.strip() == "`FinGPT/fingpt-sentiment-train` (76,772 rows)"  # the fixture's training.json
    assert training["data"][0]["path"] == "FinGPT/fingpt-sentiment-train"
    assert "datasets: []" in text.split("---")[1]


def test_a_file_trained_on_twice_is_named_once(release):
    path = release / "reports" / "training.json"
    training = json.loads(path.read_text())
    source = {"path": "data/finsent-headlines/train.jsonl", "schema": "finsent", "weight": 1.0, "rows_read": 1342,
              "rows_used": 1342}
    training["data"] = [{**source, "scheme": "3"}, {**source, "scheme": "7"}]
    path.write_text(json.dumps(training))
    text = render_card(recipe_of(release, **{"card.datasets": []}), release)
    named = "`data/finsent-headlines/train.jsonl` (2,684 rows: 1,342 3-class + 1,342 7-class)"
    assert f"LoRA fine-tuning on\n{named}, and merging" in text
    assert f"| training rows | 76,772 from {named} |" in text
    # The intro, the table and the limitations (its labelling habits: this file's, not FinGPT's mix) name it once.
    assert text.count("data/finsent-headlines/train.jsonl") == 3
    assert f"labelling habits of its training data ({named})" in text and "FinGPT's mix" not in text


def test_a_soup_of_an_ensembles_students_says_how_its_weights_were_made(release):
    path = release / "reports" / "training.json"
    training = json.loads(path.read_text())
    training["distill"] = {"from": ["runs/a/merged", "runs/b/merged"], "alpha": 0.5, "temperature": 2.0}
    training["soup"] = {"method": "greedy", "members": [{"seed": 42}, {"seed": 43}, {"seed": 44}], "trials": [],
                        "chosen": [43, 42], "dev_accuracy": 0.9, "seconds": 60.0}
    path.write_text(json.dumps(training))
    text = render_card(recipe_of(release), release)
    assert "| distilled from | the mean of runs/a/merged, runs/b/merged (alpha 0.5, temperature 2.0) |" in text
    assert ("| weights | a greedy model soup: the mean of the fine-tunings of seeds 43, 42 (of 42, 43, 44); loss and "
            "time below are the members' mean and sum |") in text


def test_weights_on_disk_are_the_release_files_not_the_pruning_intermediate(release):
    pruning = json.loads((release / "reports" / "pruning.json").read_text())
    assert pruning["bytes_on_disk"] == 3655081984  # the float32 pruned model the prune stage saved
    text = render_card(recipe_of(release), release)
    assert "This release's weights on disk: 1,827.5 MB\n  (`model.safetensors`, float16)." in text
    assert "3,655.1 MB" not in text
    (release / "model.safetensors").unlink()
    with pytest.raises(CardError, match=r"no weights \(\*.safetensors\) in .*release"):
        render_card(recipe_of(release), release)


def test_peak_memory_is_labelled_for_what_was_measured(release):
    text = render_card(recipe_of(release), release)
    assert "| p95 latency | process peak RSS | speed-up |" in text and "| peak memory |" not in text
    assert "Memory column (process peak RSS): peak resident memory (RSS) of the whole benchmarking process" in text
    path = release / "eval" / "speed.json"
    speed = json.loads(path.read_text())
    speed.update(device="NVIDIA H200", memory="cuda_allocated")
    path.write_text(json.dumps(speed))
    text = render_card(recipe_of(release), release)
    assert "| p95 latency | peak GPU memory | speed-up |" in text and "max_memory_allocated" in text
    del speed["memory"]  # an older speed.json: inferred from the device finsent bench names
    path.write_text(json.dumps({**speed, "device": "CPU AMD EPYC 7B13, 2 cores"}))
    assert "| process peak RSS |" in render_card(recipe_of(release), release)


def test_shape_speed_path_is_found_from_the_current_folder(release, tmp_path, monkeypatch):
    (tmp_path / "bench").mkdir()
    (tmp_path / "bench" / "speed.json").write_text((release / "eval" / "speed.json").read_text())
    monkeypatch.chdir(tmp_path)
    text = render_card(recipe_of(release, **{"card.shape_speed": "bench/speed.json"}), release)
    assert "### This model's shape on a small CPU" in text


def test_template_and_references_are_package_data():
    from finsent.evaluation.summary import REFERENCES_FILE, load_references
    from finsent.hub.card import TEMPLATE

    package = Path(__import__("finsent").__file__).parent
    assert TEMPLATE == package.parents[1] / "MODEL_CARD.md" and TEMPLATE.is_file()  # the maintainers' file
    assert REFERENCES_FILE == package / "resources" / "references.yaml"
    assert len(load_references()["models"]) >= 5


# --- the report schemas (finsent.core.reports): declared once, checked by every reader ---------------------


def test_check_report_names_the_file_and_the_missing_field():
    from release_factory import eval_result, speed_report, training_report

    from finsent.core.reports import ReportError, check_report

    training = training_report()
    training["lora"].pop("alpha")
    with pytest.raises(ReportError, match=r"^reports/training.json: lora: missing alpha$"):
        check_report("training", training)
    speed = speed_report()
    del speed["rows"][1]["p95_ms"]
    with pytest.raises(ReportError, match=r"^x/speed.json: rows\[1\]: missing p95_ms$"):
        check_report("speed", speed, "x/speed.json")
    result = eval_result("tfns", "3", "score", float("nan"))
    with pytest.raises(ReportError, match=r": metrics: not a finite number: accuracy = nan, .*weighted_f1 = nan$"):
        check_report("eval", result)
    with pytest.raises(ReportError, match="unknown report kind 'merge'"):
        check_report("merge", {})


def test_the_card_reads_reports_through_their_schemas(release):
    path = release / "reports" / "pruning.json"
    pruning = json.loads(path.read_text())
    del pruning["params_after"]
    path.write_text(json.dumps(pruning))
    with pytest.raises(CardError, match=r"pruning.json: missing params_after"):
        render_card(recipe_of(release), release)


def test_write_report_checks_before_writing(tmp_path):
    from release_factory import pruning_report

    from finsent.core.reports import ReportError, read_report, write_report

    report = pruning_report()
    assert read_report("pruning", write_report("pruning", report, tmp_path / "pruning.json")) == report
    with pytest.raises(ReportError, match="missing hidden_size"):
        write_report("pruning", {**report, "hidden_size": None}, tmp_path / "bad.json")
    assert not (tmp_path / "bad.json").exists()
    with pytest.raises(ReportError, match=r"no.json is missing \(it is written by `finsent prune`\)"):
        read_report("pruning", tmp_path / "no.json")


def test_card_describes_full_fine_tuning_and_distillation(release):
    from release_factory import training_report

    report = training_report()
    report.update(method="full", freeze_embeddings=True, lora=None, trainable_params=74_000_000,
                  distill={"from": "runs/teacher/merged", "alpha": 0.5, "temperature": 2.0},
                  weight_average={"from": 0.5, "first_step": 410, "steps_averaged": 1409, "dev_last_weights": None})
    (release / "reports" / "training.json").write_text(json.dumps(report))
    text = render_card(recipe_of(release), release)
    tuning = text.split("### Fine-tuning")[1].split("## Prompts")[0]
    assert "Every weight of the pruned model was fine-tuned (the token embeddings kept frozen)." in tuning
    assert "LoRA" not in tuning
    rows = ("| distilled from | runs/teacher/merged (alpha 0.5, temperature 2.0) |\n"
            "| weights | the mean of the weights after each of the last 1,409 optimizer steps (from step 410) |\n"
            "| trainable parameters | 74,000,000 |")
    assert rows in tuning


def test_card_shows_what_pruning_costs_and_ships_its_plot(release, tmp_path):
    path = write_pruning_cost(tmp_path / "bench")
    text = render_card(recipe_of(release, **{"card.pruning_cost": str(path)}), release)
    section = text.split("## What pruning costs")[1].split("## Limitations")[0]
    assert "The same training of the `smollm2-135m-fingpt` recipe (HuggingFaceTB/SmolLM2-135M-Instruct)" in section
    # the card of another recipe says the curve is a stand-in's; the dev split is not the release's benchmark
    assert "These are runs of that\nrecipe, a smaller stand-in, not of this model itself, scored on\na dev split " \
           "carved from its training files, not on this release's own benchmarks above" in section
    assert "on\nIntel Xeon Platinum 8481C (timed on a shared 2-core machine)." in section
    assert "| removed | parameters | float16 size | dev accuracy (TFNS + FPB) | TFNS dev | FPB dev | 7-class test " \
           "| items/s |" in section
    assert "| 0 % | 134,515,008 | 269.0 MB | 0.8589 | 0.8618 | 0.8512 | 0.145 | 21.2 |" in section
    assert "| 40 % | 102,685,248 | 205.4 MB | 0.8467 | 0.8513 | 0.8347 | 0.140 | – |" in section
    assert "\n![Dev accuracy against parameters, one point per share of MLP neurons removed]" \
           "(reports/pruning_cost.png)\n" in section
    copied = release / "reports" / "pruning_cost.png"
    assert copied.read_bytes() == (path.parent / "pruning_cost.png").read_bytes()
    assert [p.name for p in copied.parent.iterdir() if p.name.startswith(".")] == []  # no temporary left
    # the recipe the curve was measured on: no stand-in clause
    text = render_card(recipe_of(release, **{"card.pruning_cost": str(path), "name": "smollm2-135m-fingpt"}),
                       release)
    assert "These are runs of that\nrecipe, scored on\na dev split" in text
    # without a plot beside the JSON: the table only, and the copy of an earlier render is gone
    (path.parent / "pruning_cost.png").unlink()
    text = render_card(recipe_of(release, **{"card.pruning_cost": str(path)}), release)
    assert "| 40 % | 102,685,248 |" in text and "pruning_cost.png" not in text and not copied.exists()
    # without card.pruning_cost: no section
    assert "What pruning costs" not in render_card(recipe_of(release), release)


def test_card_names_the_device_of_each_pruning_cost_row_when_they_differ(release, tmp_path):
    """Rows trained on a GPU beside rows trained on a CPU: the card names every device and gives each row its own,
    since their items/s are not comparable."""
    cost = pruning_cost_report()
    cost["rows"][0]["device"] = "Intel Xeon Platinum 8481C"
    cost["rows"][1]["device"] = "GPU NVIDIA H200"
    cost["devices"] = ["GPU NVIDIA H200", "Intel Xeon Platinum 8481C"]
    path = tmp_path / "pruning_cost.json"
    path.write_text(json.dumps(cost))
    section = render_card(recipe_of(release, **{"card.pruning_cost": str(path)}), release).split(
        "## What pruning costs")[1].split("## Limitations")[0]
    assert "on\nGPU NVIDIA H200; Intel Xeon Platinum 8481C (timed on a shared 2-core machine)." in section
    assert "| 7-class test | items/s | trained on |\n|---:|---:|---:|---:|---:|---:|---:|---:|---|\n" in section
    assert "| 0 % | 134,515,008 | 269.0 MB | 0.8589 | 0.8618 | 0.8512 | 0.145 | 21.2 | Intel Xeon Platinum 8481C |\n" \
        in section
    assert "| 40 % | 102,685,248 | 205.4 MB | 0.8467 | 0.8513 | 0.8347 | 0.140 | – | GPU NVIDIA H200 |\n" in section
    # one device: no column, as before
    cost["rows"][1]["device"], cost["devices"] = "Intel Xeon Platinum 8481C", ["Intel Xeon Platinum 8481C"]
    path.write_text(json.dumps(cost))
    text = render_card(recipe_of(release, **{"card.pruning_cost": str(path)}), release)
    assert "| 7-class test | items/s |\n|---:|" in text and "trained on |" not in text


def test_pruning_cost_path_is_found_from_the_current_folder(release, tmp_path, monkeypatch):
    write_pruning_cost(tmp_path / "results")
    monkeypatch.chdir(tmp_path)
    text = render_card(recipe_of(release, **{"card.pruning_cost": "results/pruning_cost.json"}), release)
    assert "## What pruning costs" in text and "](reports/pruning_cost.png)" in text
    assert (release / "reports" / "pruning_cost.png").is_file()


def test_a_malformed_pruning_cost_names_the_file_and_the_field(release, tmp_path):
    path = write_pruning_cost(tmp_path)
    recipe = recipe_of(release, **{"card.pruning_cost": str(path)})
    cost = json.loads(path.read_text())
    del cost["rows"][1]["dev_accuracy"]
    path.write_text(json.dumps(cost))
    with pytest.raises(CardError, match=re.escape(f"{path}: rows[1]: missing dev_accuracy")):
        render_card(recipe, release)
    path.write_text(json.dumps({**cost, "rows": [], "reference": None}))
    with pytest.raises(CardError, match=re.escape(f"{path}: missing reference")):
        render_card(recipe, release)
    path.write_text(json.dumps({**pruning_cost_report(), "rows": []}))
    with pytest.raises(CardError, match=re.escape(f"{path}: rows is empty")):
        render_card(recipe, release)
    path.unlink()
    with pytest.raises(CardError, match=r"pruning_cost.json is missing \(it is written by "
                                        r"`build/bench/quality_table.py`\)"):
        render_card(recipe, release)
    assert not (release / "README.md").exists() and not (release / "reports" / "pruning_cost.png").exists()


def test_published_recipes_show_the_committed_pruning_cost():
    from finsent.hub.card import find_card_file, read_pruning_cost

    repo = REPO
    for name in ("smollm2-135m-fingpt", "llama-finsent-s"):
        recipe = load_recipe(repo / "build" / "recipes" / f"{name}.yaml")
        assert recipe.card.pruning_cost == "build/bench/results/pruning_cost.json"
        cost = read_pruning_cost(find_card_file(recipe.card.pruning_cost))
        assert cost["recipe"] == "smollm2-135m-fingpt" and cost["plot"] is not None
    assert load_recipe(repo / "build" / "recipes" / "smollm2-135m.yaml").card.pruning_cost is None


def test_card_shows_a_trimmed_vocabulary(release):
    path = release / "reports" / "pruning.json"
    report = json.loads(path.read_text())
    assert "vocabulary" not in render_card(recipe_of(release), release).split("### Fine-tuning")[0]
    report["vocab"] = {"first": 8192, "before": 49152, "after": 22489, "rows": 11761, "sha256": "0" * 64}
    path.write_text(json.dumps(report))
    pruning = render_card(recipe_of(release), release).split("### Pruning")[1].split("### Fine-tuning")[0]
    assert "| vocabulary (tokens) | 49,152 | 22,489 |\n| parameters |" in pruning
    assert ("- Vocabulary trimmed to the tokens the training data uses: the first 8,192 ids of the\n  tokenizer, "
            "every token of the 11,761 training rows") in pruning
