"""Where a fine-tuning step's memory and time go, for one recipe on this machine.

    OMP_WAIT_POLICY=PASSIVE .venv/bin/python build/bench/train_profile.py \\
        --recipe build/recipes/smollm2-109m-fingpt-direct.yaml --base runs/smollm2-109m-fingpt-direct/pruned \\
        --steps 8 --tag eager [--set finetune.attn_implementation=sdpa ...]

Runs ``finsent finetune``'s own code (``run_finetune``: the recipe's data, model, Trainer and optimizer) for
``--steps`` optimizer steps. The length-grouped order puts the longest batch first, so step 1 is the step of the
run's peak; its memory is broken down as:

- weights by dtype, trainable or frozen; their gradients; AdamW's state (read from the optimizer);
- activations: every tensor autograd saves for the backward (``torch.autograd.graph.saved_tensors_hooks``),
  counted once per storage and sorted into kinds by shape (attention scores, MLP, the answer-only LM head,
  autocast's bf16 copies of weights, hidden states, masks);
- the process's resident set (sampled every 5 ms) before training and at each step's peak (``--trim``: with
  glibc's freed heap handed back to the system after every step).

It trains under jemalloc where it is installed, as ``finsent finetune`` does (``FINSENT_ALLOCATOR=system``: the C
library's malloc; finsent.build.allocator). ``--save-steps N`` writes checkpoints as a real run does; ``--compile
mlp,norm,layer`` hands those modules to ``torch.compile`` first (a speed lever under test, not a recipe setting).

The last two steps run under ``torch.profiler`` (self time per operator, grouped) and
``FlopCounterMode`` (the matmul FLOPs per real token), which with the measured bf16 GEMM rate of this CPU gives
the training throughput as a share of what the CPU's matrix units deliver. Writes
build/bench/results/train_profile-TAG.json; ``--table TAG ...`` puts runs side by side in train_profile.md.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import resource
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "build" / "bench" / "results"
MB = 2**20


class RssSampler(threading.Thread):
    """The process's resident set every 5 ms; ``peak`` since the last ``reset``."""

    def __init__(self):
        super().__init__(daemon=True)
        import psutil

        self.proc, self.peak, self.running = psutil.Process(), 0, True

    def run(self):
        while self.running:
            self.peak = max(self.peak, self.proc.memory_info().rss)
            time.sleep(0.005)

    def now(self) -> int:
        return self.proc.memory_info().rss

    def reset(self) -> None:
        self.peak = self.now()


def activation_kind(t, dims: dict, weight_shapes: set, param_ptrs: set) -> str:
    """What a saved tensor is, from its shape (dims: hidden, intermediate, vocab, head_dim)."""
    import torch

    if t.untyped_storage().data_ptr() in param_ptrs:
        return "weights themselves (no new memory)"
    if t.dtype in (torch.bool, torch.int64, torch.int32, torch.uint8):
        return "masks and indices"
    shape = tuple(t.shape)
    if t.dim() == 2 and (shape in weight_shapes or shape[::-1] in weight_shapes):
        return "autocast bf16 copies of weights"
    last = shape[-1] if shape else 0
    if t.dim() == 4 and last != dims["head_dim"]:
        return "attention scores and probabilities"
    if t.dim() >= 3 and last == dims["head_dim"]:
        return "attention q, k, v, rotary"
    if last == dims["intermediate"]:
        return "MLP (gate, up, SiLU, product)"
    if last == dims["vocab"]:
        return "LM head logits (answer positions)"
    if last == dims["hidden"]:
        return "hidden states (residual, norms, projections)"
    return "other"


def make_probe(sampler: RssSampler, profile_step: int, flops_step: int, trim: bool = False):
    """A TrainerCallback that measures step 1 (memory), ``profile_step`` (profiler) and ``flops_step`` (FLOPs)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode
    from transformers import TrainerCallback

    class Probe(TrainerCallback):
        def __init__(self):
            self.record: dict = {"steps": []}
            self.passes: list[dict] = [{}]  # storage -> (kind, bytes), one dict per forward/backward pass
            self.contexts: list = []

        def new_pass(self) -> None:
            if self.passes[-1]:
                self.passes.append({})

        def on_train_begin(self, args, state, control, model=None, **kwargs):
            config = model.config
            self.dims = {"hidden": config.hidden_size, "intermediate": config.intermediate_size,
                         "vocab": config.vocab_size,
                         "head_dim": getattr(config, "head_dim", None) or config.hidden_size
                         // config.num_attention_heads}
            params = list(model.parameters())
            self.param_ptrs = {p.untyped_storage().data_ptr() for p in params}
            self.weight_shapes = {tuple(p.shape) for p in params if p.dim() == 2}
            by = defaultdict(int)
            for p in {id(p): p for p in params}.values():  # tied weights once
                by[f"{'trainable' if p.requires_grad else 'frozen'} {str(p.dtype).replace('torch.', '')}"] += (
                    p.numel() * p.element_size())
            self.record["weights_mb"] = {k: round(v / MB, 1) for k, v in by.items()}
            self.record["rss_before_training_mb"] = round(sampler.now() / MB, 1)
            sampler.reset()

        def _pack(self, t):
            ptr, saved = t.untyped_storage().data_ptr(), self.passes[-1]
            if ptr not in saved:
                saved[ptr] = (activation_kind(t, self.dims, self.weight_shapes, self.param_ptrs),
                              t.untyped_storage().nbytes())
            return t

        def on_step_begin(self, args, state, control, **kwargs):
            step = state.global_step + 1
            if step == 1:
                self.contexts.append(torch.autograd.graph.saved_tensors_hooks(self._pack, lambda t: t))
            elif step == profile_step:
                self.contexts.append(torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]))
            elif step == flops_step:
                self.flops = FlopCounterMode(display=False)
                self.contexts.append(self.flops)
            for c in self.contexts:
                c.__enter__()
            self.start = time.perf_counter()

        def on_pre_optimizer_step(self, args, state, control, model=None, **kwargs):
            if state.global_step == 0:
                grads = {id(p): p.grad for p in model.parameters() if p.grad is not None}
                self.record["gradients_mb"] = round(sum(g.numel() * g.element_size() for g in grads.values()) / MB,
                                                    1)

        def on_step_end(self, args, state, control, optimizer=None, **kwargs):
            seconds = time.perf_counter() - self.start
            for c in reversed(self.contexts):
                c.__exit__(None, None, None)
            step = state.global_step
            self.record["steps"].append({"step": step, "seconds": round(seconds, 3),
                                         "peak_rss_mb": round(sampler.peak / MB, 1)})
            if step == 1:  # the largest pass: a pass's activations are freed by its backward, before the next
                kinds = defaultdict(int)
                for kind, nbytes in max(self.passes, key=lambda p: sum(b for _, b in p.values())).values():
                    kinds[kind] += nbytes
                self.record["step1_passes"] = len(self.passes)
                self.record["activations_mb"] = {k: round(v / MB, 1) for k, v in sorted(
                    kinds.items(), key=lambda kv: -kv[1])}
                state_bytes = sum(v.numel() * v.element_size() for s in optimizer.state.values()
                                  for v in s.values() if torch.is_tensor(v))
                self.record["optimizer_state_mb"] = round(state_bytes / MB, 1)
                self.record["step1_peak_rss_mb"] = round(sampler.peak / MB, 1)
            elif step == profile_step:
                self.record["profile"] = group_profile(self.contexts[0])
                self.record["profile_step_seconds"] = round(seconds, 3)
            elif step == flops_step:
                self.record["flops_step"] = {"flops": self.flops.get_total_flops(), "seconds": round(seconds, 3)}
            self.contexts, self.passes = [], [{}]
            if trim:  # glibc keeps freed heap for reuse; this hands it back (measured: a lever, not a default)
                ctypes.CDLL("libc.so.6").malloc_trim(0)
            sampler.reset()

    return Probe()


GROUPS = [  # (group, operator names): self time of each operator, summed by group
    ("matrix multiplies", ("aten::mm", "aten::bmm", "aten::addmm", "aten::baddbmm")),
    ("attention kernels", ("aten::_scaled_dot_product_flash_attention_for_cpu",
                           "aten::_scaled_dot_product_flash_attention_for_cpu_backward")),
    ("AdamW (fused)", ("aten::_fused_adamw_",)),
    ("copies and casts", ("aten::copy_", "aten::_to_copy", "aten::clone", "aten::contiguous", "aten::cat")),
    ("softmax", ("aten::_softmax", "aten::_softmax_backward_data")),
    ("SiLU and norms", ("aten::silu", "aten::silu_backward", "aten::pow", "aten::rsqrt", "aten::mean")),
]


COMPILABLE = {"mlp": "MLP", "norm": "RMSNorm", "layer": "DecoderLayer"}  # --compile kind: class-name suffix


def compiler(kinds: list[str]):
    """A TrainerCallback that hands the model's modules of ``kinds`` (class names ending ``MLP``, ``RMSNorm``,
    ``DecoderLayer``) to ``torch.compile`` (dynamic shapes: a pass's rows and width change every step) before the
    first step; the first steps then include the compilation."""
    import torch
    from transformers import TrainerCallback

    class Compile(TrainerCallback):
        def on_train_begin(self, args, state, control, model=None, **kwargs):
            torch._dynamo.config.cache_size_limit = 64
            for module in model.modules():
                if any(type(module).__name__.endswith(COMPILABLE[k]) for k in kinds):
                    module.compile(dynamic=True)

    return Compile()


def group_profile(prof) -> dict:
    """Self CPU time per operator group and the top operators (ms), from one profiled step."""
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events)
    groups = defaultdict(float)
    for e in events:
        group = next((g for g, names in GROUPS if e.key in names), "other operators")
        groups[group] += e.self_cpu_time_total
    top = sorted(events, key=lambda e: -e.self_cpu_time_total)[:15]
    return {"total_ms": round(total / 1e3, 1),
            "groups": {g: {"ms": round(v / 1e3, 1), "share": round(v / total, 3)}
                       for g, v in sorted(groups.items(), key=lambda kv: -kv[1])},
            "top": [{"op": e.key, "ms": round(e.self_cpu_time_total / 1e3, 1), "calls": e.count} for e in top]}


def bf16_gemm_gflops(config) -> float:
    """The CPU's bf16 GEMM rate on the model's own MLP shape ([2048 tokens, hidden] x [hidden, intermediate])."""
    import torch

    from finsent.speed.floor import module_gflops

    linear = torch.nn.Linear(config.hidden_size, config.intermediate_size, bias=False).to(torch.bfloat16)
    return module_gflops(linear, 2048, torch.bfloat16, "cpu", seconds=3.0)


def write_table(tags: list[str]) -> Path:
    """train_profile.md: the memory of each run's longest step by part, and where a step's time goes."""
    runs = [json.loads((RESULTS / f"train_profile-{tag}.json").read_text()) for tag in tags]
    kinds = list(dict.fromkeys(k for r in runs for k in r["activations_mb"] if r["activations_mb"][k] >= 1))
    head = "| MiB | " + " | ".join(f"`{r['tag']}`" for r in runs) + " |\n|---|" + "---:|" * len(runs)

    def row(name, values):
        return f"| {name} | " + " | ".join(f"{v:,.0f}" if isinstance(v, (int, float)) else v for v in values) + " |"

    def settings(r):  # recipe overrides, then the allocator / oneDNN variables of the run
        env = [f"{k}={v}" for k, v in r.get("environment", {}).items() if k != "OMP_WAIT_POLICY"]
        return ", ".join(f"`{o}`" for o in r["overrides"] + env) or "the recipe as it is"

    lines = [f"Training steps of `{runs[0]['recipe']}`, {runs[0]['threads']} threads, torch {runs[0]['torch']} "
             "(`build/bench/train_profile.py`). Settings besides the recipe's:", ""]
    lines += [f"- `{r['tag']}` ({r['cpu']}, {len(r['steps'])} steps): {settings(r)}" for r in runs]
    lines += ["", "Memory at the longest batch (step 1; activations of its largest pass, by kind):", "", head]
    lines.append(row("weights, trainable float32", [r["weights_mb"].get("trainable float32", 0) for r in runs]))
    lines.append(row("weights, frozen", [sum(v for k, v in r["weights_mb"].items() if k.startswith("frozen"))
                                         for r in runs]))
    lines.append(row("gradients", [r["gradients_mb"] for r in runs]))
    lines.append(row("AdamW state (2 moments)", [r["optimizer_state_mb"] for r in runs]))
    lines += [row(f"activations: {k}", [r["activations_mb"].get(k, 0) for r in runs]) for k in kinds]
    lines.append(row("passes in step 1", [r.get("step1_passes", 1) for r in runs]))
    lines.append(row("process before training (RSS)", [r["rss_before_training_mb"] for r in runs]))
    lines.append(row("**peak RSS of the steps**", [r["peak_rss_mb"] for r in runs]))
    groups = list(dict.fromkeys(g for r in runs for g in r["profile"]["groups"]))
    lines += ["", "Time (steps 2+ without instruments; the profile is one step's self time by operator group):", "",
              head.replace("| MiB |", "| |")]
    lines.append(row("tokens/s (real tokens)", [r["tokens_per_second"] for r in runs]))
    lines.append(row("matmul FLOPs per real token (M)", [r["flops_per_token"] / 1e6 for r in runs]))
    lines.append(row("bf16 GEMM rate of this CPU (GFLOP/s)", [r["bf16_gemm_gflops"] for r in runs]))
    lines.append(row("share of the GEMM rate", [f"{100 * r['share_of_gemm_rate']:.0f} %" for r in runs]))
    lines += [row(f"profile: {g}", [f"{100 * r['profile']['groups'].get(g, {}).get('share', 0):.0f} %"
                                     for r in runs]) for g in groups]
    path = RESULTS / "train_profile.md"
    path.write_text("\n".join(lines) + "\n")
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--table", nargs="+", metavar="TAG", help="only write train_profile.md from these runs")
    parser.add_argument("--recipe")
    parser.add_argument("--base", help="the pruned model the recipe fine-tunes")
    parser.add_argument("--steps", type=int, default=8)
    # The instrumented steps come last by default: the profiler and the FLOP counter raise the resident set of
    # the steps after them.
    parser.add_argument("--profile-step", type=int, help="the step run under torch.profiler (default: next to last)")
    parser.add_argument("--flops-step", type=int, help="the step run under FlopCounterMode (default: the last)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--tag")
    parser.add_argument("--compile", default="", metavar="KINDS",
                        help="torch.compile these modules, comma-separated: mlp, norm, layer")
    parser.add_argument("--save-steps", type=int,
                        help="write a checkpoint every N steps, as finetune.save_steps does (default: none)")
    parser.add_argument("--trim", action="store_true",
                        help="hand freed heap back to the system after each step (glibc malloc_trim)")
    args = parser.parse_args()
    if args.table:
        print(f"wrote {write_table(args.table)}")
        return
    if not (args.recipe and args.base and args.tag):
        parser.error("--recipe, --base and --tag are required (or --table TAG ...)")
    if args.steps < 4:
        parser.error("--steps must be at least 4 (step 1 for memory, two plain steps, then the instruments)")
    unknown = set(filter(None, args.compile.split(","))) - set(COMPILABLE)
    if unknown:
        parser.error(f"--compile: unknown kinds {sorted(unknown)}; choose from {', '.join(COMPILABLE)}")
    from finsent.build.allocator import use_jemalloc

    use_jemalloc()  # as finsent finetune trains (FINSENT_ALLOCATOR=system: glibc's malloc)
    args.profile_step = args.profile_step or args.steps - 1
    args.flops_step = args.flops_step or args.steps

    import torch
    from transformers import AutoConfig

    import finsent.build.finetune as finetune
    import finsent.build.trainer as trainer_module
    from finsent.core.provenance import cpu_name, git_commit
    from finsent.core.recipes import load_recipe, parse_overrides

    recipe = load_recipe(args.recipe, parse_overrides(args.set))
    recipe.finetune.dev_every, recipe.finetune.save_steps = 0, args.save_steps or 10**6  # no dev probes
    finetune.score_model = lambda *a, **k: None  # nor the dev score after them
    widths = []
    collate = finetune.collate

    def recording_collate(items, pad_id):
        batch = collate(items, pad_id)
        widths.append({"rows": len(items), "width": batch["input_ids"].shape[1],
                       "tokens": int(batch["attention_mask"].sum())})
        return batch

    finetune.collate = recording_collate
    sampler = RssSampler()
    sampler.start()
    probe = make_probe(sampler, args.profile_step, args.flops_step, trim=args.trim)
    compute_loss = trainer_module.FinSentTrainer.compute_loss

    def counted_compute_loss(self, *a, **k):  # each call is one forward/backward pass of a batch
        probe.new_pass()
        return compute_loss(self, *a, **k)

    trainer_module.FinSentTrainer.compute_loss = counted_compute_loss
    with tempfile.TemporaryDirectory() as tmp:
        extra = [compiler(args.compile.split(","))] if args.compile else []
        finetune.run_finetune(recipe, Path(args.base), Path(tmp) / "out", max_steps=args.steps,
                              callbacks=extra + [probe])
    sampler.running = False
    config = AutoConfig.from_pretrained(args.base)
    record = probe.record
    for step, batch in zip(record["steps"], widths):
        step.update(batch)
    flop = record["flops_step"]
    tokens = record["steps"][args.flops_step - 1]["tokens"]
    rate = bf16_gemm_gflops(config)
    timed = [s for s in record["steps"][1:] if s["step"] not in (args.profile_step, args.flops_step)]
    tps = sum(s["tokens"] for s in timed) / sum(s["seconds"] for s in timed)
    # The profiler and the FLOP counter hold memory of their own: the run's peak is read on the other steps.
    plain_peak = max(s["peak_rss_mb"] for s in record["steps"] if s["step"] not in (args.profile_step,
                                                                                       args.flops_step))
    result = {
        "tag": args.tag, "git_commit": git_commit(), "cpu": cpu_name(), "threads": torch.get_num_threads(),
        "torch": torch.__version__, "recipe": args.recipe,
        # allocator (a preloaded one too) and oneDNN settings change the memory measured here: recorded when set
        "environment": {k: v for k, v in os.environ.items()
                        if k.startswith(("MALLOC_", "ONEDNN_", "DNNL_", "OMP_", "LD_PRELOAD", "FINSENT_"))},
        "overrides": args.set + ["--trim"] * args.trim + [f"--compile {args.compile}"] * bool(args.compile)
        + [f"--save-steps {args.save_steps}"] * bool(args.save_steps),
        "recipe_contents": {k: v for k, v in recipe.to_dict().items() if k != "source"},
        **record,
        "peak_rss_mb": plain_peak,
        "peak_rss_mb_with_instruments": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "flops_per_token": round(flop["flops"] / tokens),
        "tokens_per_second": round(tps, 1),
        "bf16_gemm_gflops": round(rate, 1),
        "share_of_gemm_rate": round(tps * flop["flops"] / tokens / 1e9 / rate, 3),
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"train_profile-{args.tag}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k not in ("recipe_contents", "profile")}, indent=1))
    print(json.dumps(result.get("profile", {}).get("groups"), indent=1))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
