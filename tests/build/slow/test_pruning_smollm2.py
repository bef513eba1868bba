"""Structured GLU pruning on the real SmolLM2: optipfair-equal kept indices, and the README's prune command."""

from __future__ import annotations

import copy
import json

import pytest
import torch
from checkout import REPO
from transformers import AutoModelForCausalLM

from finsent.build.pruning import glu_mlps, prune_model
from finsent.cli import main


def logits(model, ids):
    with torch.no_grad():
        return model(input_ids=ids).logits


# --- the real SmolLM2: optipfair equality, save/reload -------------------------------------------


@pytest.fixture(scope="module")
def smollm2(smollm2_dir):
    return AutoModelForCausalLM.from_pretrained(smollm2_dir, dtype=torch.float32).eval()


def shared_clone(model):
    """New module objects over the same weight tensors: pruning replaces Parameters, never edits them in place,
    so a prune of the clone leaves ``model`` intact without copying 540 MB per test."""
    return copy.deepcopy(model, memo={id(p): p for p in model.parameters()})


def kept_rows(original, pruned) -> list[list[int]]:
    """Which original neuron each surviving gate row came from, per layer (rows are unique in real weights)."""
    found = []
    for full, cut in zip(glu_mlps(original), glu_mlps(pruned), strict=True):
        where = {row.numpy().tobytes(): j for j, row in enumerate(full.gate_proj.weight.detach())}
        found.append([where[row.numpy().tobytes()] for row in cut.gate_proj.weight.detach()])
    return found


OPTIPFAIR_CASES = [  # (our arguments, optipfair 0.4.2's arguments); SmolLM2 I=1536, H=576
    ({"method": "ppm", "ratio": 0.4}, {"neuron_selection_method": "MAW", "pruning_percentage": 40}),  # keeps 922
    ({"method": "vow", "ratio": 0.4}, {"neuron_selection_method": "VOW", "pruning_percentage": 40}),
    ({"method": "l2", "ratio": 0.4}, {"neuron_selection_method": "L2", "pruning_percentage": 40}),
    ({"method": "pon", "ratio": 0.1}, {"neuron_selection_method": "PON", "pruning_percentage": 10}),  # 1383
    # 140 % of 576 = 806.4 kept -> 807, rounded down to 768
    ({"method": "ppm", "expansion": 140, "round_to": 64},
     {"neuron_selection_method": "PPM", "expansion_rate": 140, "pruning_percentage": None, "expansion_divisor": 64}),
]


@pytest.mark.parametrize("ours,theirs", OPTIPFAIR_CASES, ids=lambda case: "-".join(map(str, case.values())))
def test_smollm2_kept_indices_equal_optipfair(smollm2, ours, theirs):
    from optipfair.pruning.mlp_glu import prune_model_mlp_glu

    before = [m.gate_proj.weight.clone() for m in glu_mlps(smollm2)[:2]]
    reference = prune_model_mlp_glu(shared_clone(smollm2), show_progress=False, **theirs)
    pruned = shared_clone(smollm2)
    report = prune_model(pruned, progress=False, **ours)
    expected, got = kept_rows(smollm2, reference), kept_rows(smollm2, pruned)
    assert got == expected
    assert all(layer == sorted(layer) for layer in got)
    assert report["kept_per_layer"] == [len(layer) for layer in expected] == [reference.config.intermediate_size] * 30
    for a, b in zip(glu_mlps(pruned), glu_mlps(reference), strict=True):
        assert torch.equal(a.gate_proj.weight, b.gate_proj.weight)
        assert torch.equal(a.up_proj.weight, b.up_proj.weight)
        assert torch.equal(a.down_proj.weight, b.down_proj.weight)
    assert all(torch.equal(w, m.gate_proj.weight) for w, m in zip(before, glu_mlps(smollm2), strict=False))


def readme_prune_commands() -> list[list[str]]:
    """The `finsent prune` lines of build/README.md's Pruning section, split into arguments."""
    import shlex

    text = (REPO / "build" / "README.md").read_text()
    section = text.split("## Pruning", 1)[1].split("\n## ", 1)[0]
    return [shlex.split(line, comments=True) for line in section.splitlines() if line.startswith("finsent prune")]


def test_smollm2_readme_prune_command_saves_a_model_that_reloads(smollm2, tmp_path, capsys):
    """build/README.md's SmolLM2 command, run as written (only --out moved into tmp_path)."""
    from transformers import AutoTokenizer

    argv = next(cmd for cmd in readme_prune_commands() if "smollm2" in cmd)
    out = tmp_path / "pruned"
    argv[argv.index("--out") + 1] = str(out)
    assert main([*argv[1:], "--no-progress"]) == 0
    assert f"saved {out}" in capsys.readouterr().out
    in_memory = shared_clone(smollm2)
    prune_model(in_memory, method="ppm", ratio=0.4, progress=False)
    reloaded = AutoModelForCausalLM.from_pretrained(out).eval()
    ids = AutoTokenizer.from_pretrained(out)("Acme Corp beats estimates and raises guidance", return_tensors="pt")
    assert torch.equal(logits(reloaded, ids.input_ids), logits(in_memory, ids.input_ids))
    report = json.loads((out / "pruning.json").read_text())
    assert (report["params_before"], report["params_after"]) == (134_515_008, 102_685_248)
    assert report["params_after"] == sum(p.numel() for p in reloaded.parameters())
    assert (report["intermediate_before"], report["intermediate_after"], report["kept_per_layer"]) == (
        1536, 922, [922] * 30)
    assert report["bytes_on_disk"] == (out / "model.safetensors").stat().st_size
    assert reloaded.config.intermediate_size == 922
