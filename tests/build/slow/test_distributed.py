"""`finsent finetune` under torchrun: 2 CPU processes on gloo train like one process on the same global batch.

The tiny random Llama of conftest, saved to disk, trained with the fast paths on (label-position loss, shared
prefix, length-grouped batches) and no dropout, so that both runs are deterministic:

- one process, batch 4 x accumulation 2 = 8 rows a step, in this process;
- `torchrun --nproc_per_node 2 -m finsent.cli finetune`, batch 2 x accumulation 2 x 2 processes = 8 rows a step.

The per-step training losses (training.json's log) agree to LOSS_RTOL, only rank 0 wrote (one adapter folder,
no temporary sibling, no second checkpoint folder), and a run killed mid-way resumes under torchrun at the step
after its last checkpoint and ends on the same losses as the uninterrupted run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from finsent.core.outputs import MARKER
from finsent.core.recipes import load_recipe

TORCHRUN = Path(sys.executable).with_name("torchrun")
# Measured here: the largest relative difference of the 8 logged losses was 9e-8 (float32 rounding: the two
# processes pad their half-batches to other lengths and the gradient is summed in another order). The same run
# with one DDP mistake put back (monkeypatched, 2 processes vs 1): the fast loss called past the DDP wrapper
# (gradients never all-reduced) 3e-3 at worst, 5e-4 from step 2; transformers' own length-grouped sampler
# (its row groups depend on the per-device batch) 7e-3; the loss not scaled back up for the 2 processes 0.5.
# 1e-5 is 100x the rounding and 50x below the smallest of those.
LOSS_RTOL = 1e-5
STEPS = 8  # 48 rows / 8 a step: 6 steps an epoch, so the run crosses into a second epoch (a new row order)

HEADLINES = [
    ("Orbit Air doubles its dividend after a record year", "strong positive"),
    ("Talon Mining shares sink as the regulator halts its main mine", "strong negative"),
    ("Cobalt Foods will publish results on 4 March", "neutral"),
    ("Vega Retail trims costs slightly; outlook unchanged", "mildly positive"),
    ("Harbor Bank warns of softer loan growth next quarter", "moderately negative"),
    ("$PLMX up 3% as deliveries edge past forecasts after a long and difficult winter", "moderately positive"),
]


def write_recipe(tmp: Path, batch_size: int, **extra) -> Path:
    from finsent.core.labels import to_coarse

    data = tmp / "train.jsonl"
    if not data.exists():
        rows = [{"id": f"t{i}-{j}", "text": text + " (update)" * (j % 3), "label": label, "coarse": to_coarse(label),
                 "kind": "tweet" if text.startswith("$") else "news", "topic": "test"}
                for j in range(4) for i, (text, label) in enumerate(HEADLINES)]
        data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    settings = {"batch_size": batch_size, "grad_accum": 2, "max_steps": STEPS, "learning_rate": 1e-3,
                "lora_dropout": 0.0, "logging_steps": 1, "save_steps": 2, "threads": 1, "precision": "fp32",
                "fast_loss": True, "share_prefix": True, "group_by_length": True, "warmup_ratio": 0.0, **extra}
    lines = ["name: tiny", "finetune:", "  data:", f"    - {{path: {data}, schema: finsent, scheme: '3'}}",
             f"    - {{path: {data}, schema: finsent, scheme: '7'}}"]
    lines += [f"  {key}: {json.dumps(value)}" for key, value in settings.items()]
    path = tmp / f"recipe-{batch_size}.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def torchrun(*args: str, cwd: Path, script: list[str] | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    target = script or ["-m", "finsent.cli", "finetune"]
    cmd = [str(TORCHRUN), "--standalone", "--nproc_per_node", "2", *target, *args]
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=240)


def losses(out: Path) -> dict[int, float]:
    return {e["step"]: e["loss"] for e in json.loads((out / "training.json").read_text())["log"]}


def assert_same_curve(got: dict[int, float], want: dict[int, float]) -> float:
    assert sorted(got) == sorted(want) == list(range(1, STEPS + 1))
    worst = max(abs(got[s] - want[s]) / abs(want[s]) for s in want)
    assert worst <= LOSS_RTOL, {s: (got[s], want[s]) for s in want}
    return worst


@pytest.fixture(scope="module")
def single_run(tiny_llama_dir, tmp_path_factory):
    """One process, batch 4 x accumulation 2: the reference curve."""
    import torch

    from finsent.build.finetune import run_finetune

    tmp = tmp_path_factory.mktemp("single")
    threads = torch.get_num_threads()
    try:
        out = run_finetune(load_recipe(write_recipe(tmp, 4)), tiny_llama_dir, tmp / "adapter")
    finally:
        torch.set_num_threads(threads)
    return out


def test_two_gloo_processes_train_like_one_on_the_same_global_batch(tiny_llama_dir, single_run, tmp_path):
    recipe = write_recipe(tmp_path, 4)  # batch 4 in the file, 2 a device on the command line
    run = torchrun("--recipe", str(recipe), "--base", str(tiny_llama_dir), "--out", "adapter", "--set",
                   "finetune.batch_size=2", cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-4000:]
    out = tmp_path / "adapter"
    report = json.loads((out / "training.json").read_text())
    assert report["processes"] == 2 and report["effective_batch"] == 2 * 2 * 2 == 8 and report["steps"] == STEPS
    single = json.loads((single_run / "training.json").read_text())
    assert single["processes"] == 1 and single["effective_batch"] == 4 * 2 == 8
    worst = assert_same_curve(losses(out), losses(single_run))
    print(f"largest relative loss difference, 2 processes vs 1: {worst:.2e}")
    # Only rank 0 wrote: one adapter folder with its checkpoints, no temporary sibling, no leftover checkpoint folder.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adapter", "recipe-4.yaml", "train.jsonl"]
    assert (out / MARKER).is_file() and (out / "adapter_model.safetensors").is_file()
    assert [p.name for p in (out / "checkpoints").glob("checkpoint-*")] == [f"checkpoint-{STEPS}"]
    # The summary line is printed once (rank 0), and the finsent log lines come from rank 0 only.
    assert run.stdout.count("adapter: adapter  steps 8") == 1
    assert run.stderr.count("LoRA: ") == 1
    # The learned adapters agree too (the same 8 steps on the same rows).
    import torch
    from safetensors.torch import load_file

    got, want = load_file(out / "adapter_model.safetensors"), load_file(single_run / "adapter_model.safetensors")
    assert got.keys() == want.keys()
    for name in want:
        torch.testing.assert_close(got[name], want[name], rtol=1e-4, atol=1e-6)


KILLER = """
import os, sys
from transformers import TrainerCallback
from finsent.build import finetune
from finsent.core.recipes import load_recipe

class Kill(TrainerCallback):  # both processes die at once, as under a SIGKILL of the job
    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == int(os.environ["KILL_AT"]):
            sys.stdout.flush()
            os._exit(9)

recipe, base, out = sys.argv[1:4]
finetune.run_finetune(load_recipe(recipe), base, out, callbacks=[Kill()])
"""


def test_a_killed_distributed_run_resumes_at_the_next_step(tiny_llama_dir, single_run, tmp_path):
    recipe = write_recipe(tmp_path, 2)
    killer = tmp_path / "killer.py"
    killer.write_text(KILLER)
    os.environ["KILL_AT"] = "5"  # after checkpoint-4 was saved (save_steps 2)
    try:
        run = torchrun(str(recipe), str(tiny_llama_dir), "adapter", cwd=tmp_path, script=[str(killer)])
    finally:
        del os.environ["KILL_AT"]
    assert run.returncode != 0
    work = tmp_path / ".adapter.checkpoints"
    assert not (tmp_path / "adapter").exists() and [p.name for p in work.glob("checkpoint-*")] == ["checkpoint-4"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [".adapter.checkpoints", "killer.py", "recipe-2.yaml",
                                                          "train.jsonl"]

    run = torchrun("--recipe", str(recipe), "--base", str(tiny_llama_dir), "--out", "adapter", "--resume",
                   cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-4000:]
    out = tmp_path / "adapter"
    report = json.loads((out / "training.json").read_text())
    assert report["resumed_from_step"] == 4 and report["steps"] == STEPS
    assert run.stderr.count("--resume: continuing from checkpoint-4 (step 4)") == 1
    # Steps 5-8 after the resume equal the uninterrupted run's: weights, optimizer, schedule and row order restored.
    assert_same_curve(losses(out), losses(single_run))
    assert not work.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["adapter", "killer.py",
                                                                                "recipe-2.yaml", "train.jsonl"]


def test_two_processes_killed_and_resumed_average_the_weights_like_one(tiny_llama_dir, tmp_path):
    """finetune.average_from under DDP: every rank keeps the mean, rank 0 stores it in checkpoint-4, the resumed
    run continues it, and the saved adapter is the single process's mean of steps 4-8."""
    import torch
    from safetensors.torch import load_file

    from finsent.build.finetune import run_finetune

    (tmp_path / "one").mkdir()
    threads = torch.get_num_threads()
    try:
        single = run_finetune(load_recipe(write_recipe(tmp_path / "one", 4, average_from=0.4)), tiny_llama_dir,
                              tmp_path / "one" / "adapter")
    finally:
        torch.set_num_threads(threads)
    recipe = write_recipe(tmp_path, 2, average_from=0.4)
    killer = tmp_path / "killer.py"
    killer.write_text(KILLER)
    os.environ["KILL_AT"] = "5"  # after checkpoint-4, whose mean holds step 4 (the first: ceil(0.4 x 8))
    try:
        run = torchrun(str(recipe), str(tiny_llama_dir), "adapter", cwd=tmp_path, script=[str(killer)])
    finally:
        del os.environ["KILL_AT"]
    assert run.returncode != 0
    assert (tmp_path / ".adapter.checkpoints" / "checkpoint-4" / "weight_average.safetensors").is_file()
    run = torchrun("--recipe", str(recipe), "--base", str(tiny_llama_dir), "--out", "adapter", "--resume",
                   cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-4000:]
    report = json.loads((tmp_path / "adapter" / "training.json").read_text())
    assert report["weight_average"] == json.loads((single / "training.json").read_text())["weight_average"] == {
        "from": 0.4, "first_step": 4, "steps_averaged": 5, "dev_last_weights": None}
    got = load_file(tmp_path / "adapter" / "adapter_model.safetensors")
    want = load_file(single / "adapter_model.safetensors")
    assert got.keys() == want.keys()
    for name in want:
        torch.testing.assert_close(got[name], want[name], rtol=1e-4, atol=1e-6)


def test_fsdp_is_checked_and_passed_to_the_trainer(tiny_llama_dir, tmp_path):
    from finsent.build.distributed import fsdp_arguments
    from finsent.build.finetune import FinetuneError, run_finetune
    from finsent.core.recipes import RecipeError

    recipe = load_recipe(write_recipe(tmp_path, 2, fsdp="full_shard"))
    assert recipe.finetune.fsdp == "full_shard"
    assert fsdp_arguments(recipe.finetune) == {"fsdp": True, "fsdp_config": {"version": 2,
                                                                             "reshard_after_forward": True}}
    recipe.finetune.fsdp = "shard_grad_op"
    assert fsdp_arguments(recipe.finetune)["fsdp_config"]["reshard_after_forward"] is False
    recipe.finetune.fsdp = None
    assert fsdp_arguments(recipe.finetune) == {}
    with pytest.raises(RecipeError, match="finetune.fsdp must be one of None, full_shard, shard_grad_op"):
        load_recipe(write_recipe(tmp_path, 2, fsdp="full_shard auto_wrap"))
    # transformers accepts what fsdp_arguments gives (FSDP2, one unit per decoder layer).
    from transformers import TrainingArguments

    args = TrainingArguments(output_dir=str(tmp_path / "x"), use_cpu=True, report_to="none",
                             **fsdp_arguments(load_recipe(write_recipe(tmp_path, 2, fsdp="full_shard")).finetune))
    assert args.fsdp is True and args.fsdp_plugin_args["fsdp_version"] == 2
    # FSDP shards over processes: in one process it is refused before any model loads.
    with pytest.raises(FinetuneError, match="finetune.fsdp 'full_shard' shards the model over several processes"):
        run_finetune(load_recipe(write_recipe(tmp_path, 2, fsdp="full_shard")), tiny_llama_dir, tmp_path / "a")
    assert not (tmp_path / "a").exists()


def test_release_refuses_a_distributed_launch(monkeypatch, capsys):
    from finsent.build.distributed import require_single_process
    from finsent.core.errors import UsageError

    require_single_process("finsent release")  # one process: fine
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    with pytest.raises(UsageError, match=r"finsent release runs in one process.*WORLD_SIZE=2") as err:
        require_single_process("finsent release")
    assert "torchrun --nproc_per_node N -m finsent.cli finetune" in str(err.value)
    assert "finsent release RECIPE --only merge" in str(err.value)
    from finsent.cli import main

    assert main(["release", "no-such-recipe.yaml"]) == 2  # the command refuses before reading its recipe
    assert capsys.readouterr().err.startswith("finsent release: error: finsent release runs in one process")
