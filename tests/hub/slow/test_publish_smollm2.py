"""``finsent push`` of a real SmolLM2 release through the loopback Hub server of ``hub_server.py``: pushed,
downloaded at its tag, byte-identical, the same logits."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import yaml
from huggingface_hub import snapshot_download
from release_factory import RECIPE, write_reports

from finsent.hub import publish
from finsent.hub.publish import push_release

REPO = "alice/Llama-FinSent-S"


# --- the real model: push, download the tag, load it, same logits -----------------------------------


def test_real_smollm2_release_round_trips_through_the_hub(hub, smollm2_dir, tmp_path):
    """SmolLM2 pruned (finsent.build.pruning) and merged with a LoRA adapter (finsent.build.merge, fp16), with card and
    results, goes up as v1.0.0, comes back byte-identical and gives identical logits and labels through
    transformers and FinSentClassifier."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from finsent.build.merge import run_merge
    from finsent.build.pruning import prune_model
    from finsent.core.classify import FinSentClassifier
    from finsent.core.recipes import load_recipe
    from finsent.core.reports import check_report
    from finsent.hub.card import render_card

    pruned, adapter, release = tmp_path / "pruned", tmp_path / "adapter", tmp_path / "release"
    model = AutoModelForCausalLM.from_pretrained(smollm2_dir, dtype=torch.float32)
    report = prune_model(model, method="ppm", ratio=0.4, progress=False)
    model.save_pretrained(pruned)
    AutoTokenizer.from_pretrained(smollm2_dir).save_pretrained(pruned)
    lora = get_peft_model(model, LoraConfig(r=8, lora_alpha=32, target_modules=["q_proj", "v_proj", "up_proj"]))
    torch.manual_seed(0)
    for name, weight in lora.named_parameters():  # a small, non-zero update, so merging changes the weights
        if "lora_B" in name:
            weight.data.normal_(0, 0.01)
    lora.save_pretrained(adapter)
    (tmp_path / "recipe.yaml").write_text(yaml.safe_dump(RECIPE))
    # Merged and saved in fp16, this model's logits differed from the float32 adapter model's by 0.248
    # (measured), over merge.tolerance's 0.05: the merge stage's own check is not what this test is about.
    recipe = load_recipe(tmp_path / "recipe.yaml", {"model.base": "smollm2", "merge.tolerance": 1.0})
    run_merge(recipe, pruned, adapter, release, dtype="float16")
    write_reports(release)  # the merged weights stay
    report["bytes_on_disk"] = sum(p.stat().st_size for p in pruned.glob("*.safetensors"))  # as run_prune does
    (release / "reports" / "pruning.json").write_text(json.dumps(check_report("pruning", report)))
    (release / "eval" / "tfns-3-score.predictions.jsonl").write_text('{"i": 0, "gold": "negative"}\n')
    # The export stage's GGUF (the recipe asks for f16) goes up in the same commit and runs from the download.
    from finsent.export.stage import run_exports

    recipe.export.gguf, recipe.export.agreement_n = ["f16"], 0
    run_exports(recipe, release)
    render_card(recipe, release)
    assert f"weights on disk: {(release / 'model.safetensors').stat().st_size / 1e6:,.1f} MB" in \
        (release / "README.md").read_text()

    out = push_release(release, REPO, "v1.0.0", token=hub.token, endpoint=hub.url)
    local = Path(snapshot_download(REPO, revision="v1.0.0", endpoint=hub.url, token=hub.token,
                                   cache_dir=tmp_path / "cache"))
    assert local.name == out["commit"]
    sent = {p.relative_to(release).as_posix() for p in publish.release_files(release)}
    assert "eval/tfns-3-score.predictions.jsonl" not in sent and "README.md" in sent
    got = {p.relative_to(local).as_posix() for p in local.rglob("*") if p.is_file()} - {".gitattributes"}
    assert got == sent
    for rel in sent:
        assert (local / rel).read_bytes() == (release / rel).read_bytes(), rel

    texts = ["Acme Corp beats third-quarter estimates and raises guidance",
             "Shares of Zenith Bank slump after regulator opens fraud probe"]
    tokenizer = AutoTokenizer.from_pretrained(release)
    ids = tokenizer(texts[0], return_tensors="pt")["input_ids"]
    sent_model = AutoModelForCausalLM.from_pretrained(release, dtype=torch.float32).eval()
    got_model = AutoModelForCausalLM.from_pretrained(local, dtype=torch.float32).eval()
    with torch.inference_mode():
        assert torch.equal(sent_model(ids).logits, got_model(ids).logits)
    a = FinSentClassifier(sent_model, tokenizer)
    b = FinSentClassifier.from_pretrained(str(local))  # the downloaded tag, through the library's own loader
    assert torch.equal(a.label_logprobs(texts, "7"), b.label_logprobs(texts, "7"))
    assert [p.label for p in a.classify(texts)] == [p.label for p in b.classify(texts)]
    assert "llama-finsent-s-F16.gguf" in sent and "reports/exports.json" in sent
    if importlib.util.find_spec("llama_cpp"):
        from finsent.export.gguf import GGUFScorer

        with GGUFScorer(local / "llama-finsent-s-F16.gguf", threads=2) as scorer:
            got = scorer.label_logprobs(texts, "7", "news")
        assert abs(got - b.label_logprobs(texts, "7").double().numpy()).max() < 0.05
