"""Fine-tuning and merging: the fast loss equals the plain one, the stage runs and resumes, merges are checked."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from finetune_factory import tiny_recipe, write_finsent


def test_finetune_names_a_missing_base_and_bad_settings(tiny_llama_dir, tmp_path, capsys):
    """Errors a user can fix are FinsentErrors naming the problem (one line at the command line), not tracebacks;
    nothing is written."""
    from finsent.build.finetune import FinetuneError, run_finetune
    from finsent.cli import main
    from finsent.core.errors import FinsentError, UsageError
    from finsent.core.recipes import RecipeError

    data = write_finsent(tmp_path / "train.jsonl", 1)
    with pytest.raises(FinsentError, match="is neither an existing folder nor a Hub id"):
        run_finetune(tiny_recipe(data), tmp_path / "no-such-model", tmp_path / "a")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FinsentError, match="has no config.json"):
        run_finetune(tiny_recipe(data), tmp_path / "empty", tmp_path / "a")
    with pytest.raises(RecipeError, match="finetune.batch_size must be >= 1, got 0"):
        run_finetune(tiny_recipe(data, batch_size=0), tiny_llama_dir, tmp_path / "a")
    no_data = tiny_recipe(data)
    no_data.finetune.data = []
    with pytest.raises(RecipeError, match="finetune.data is empty"):
        run_finetune(no_data, tiny_llama_dir, tmp_path / "a")
    with pytest.raises(FinetuneError, match="precision fp16 needs a GPU") as err:
        run_finetune(tiny_recipe(data, precision="fp16"), tiny_llama_dir, tmp_path / "a")
    assert isinstance(err.value, UsageError) and isinstance(err.value, ValueError)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty", "train.jsonl"]
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"name: r\nfinetune:\n  data:\n    - {{path: {data}, schema: finsent, scheme: 3}}\n")
    assert main(["finetune", "--recipe", str(recipe), "--base", str(tmp_path / "nope"), "--out",
                 str(tmp_path / "a")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("finsent finetune: error: model") and "nope" in err and "Traceback" not in err


def test_cpu_has_native_bf16_matches_the_cpu_flags():
    """torch's answer agrees with the kernel's CPU flags (an earlier check looked in the wrong module: always False)."""
    from finsent.build.trainer import autocast_dtype, cpu_has_native_bf16

    flags = set()
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("flags"):
            flags = set(line.split(":", 1)[1].split())
            break
    expected = bool(flags & {"avx512_bf16", "amx_tile"})
    assert cpu_has_native_bf16() is expected
    assert autocast_dtype("auto", "cpu") is (torch.bfloat16 if expected else None)
    assert autocast_dtype("fp32", "cpu") is None and autocast_dtype("bf16", "cpu") is torch.bfloat16


@pytest.mark.parametrize("preset, expected", [(None, "16"), ("1024", "1024")])
def test_importing_build_bounds_the_onednn_primitive_cache_unless_the_user_set_it(preset, expected):
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "ONEDNN_PRIMITIVE_CACHE_CAPACITY"}
    if preset:
        env["ONEDNN_PRIMITIVE_CACHE_CAPACITY"] = preset
    # A fresh interpreter: the value must be in the environment before torch builds its first oneDNN primitive,
    # and the CLI gets it from importing its commands.
    code = "import os, finsent.cli; print(os.environ['ONEDNN_PRIMITIVE_CACHE_CAPACITY'])"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == expected
