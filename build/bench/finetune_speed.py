"""Fine-tuning speed on this machine: the plain peft loop against the optimized one, side by side, one run.

    OMP_WAIT_POLICY=PASSIVE .venv/bin/python build/bench/finetune_speed.py --base runs/smollm2-135m/pruned --steps 4

Every configuration trains a LoRA (r8, alpha 32 on q,k,v,o,gate,up,down) on the same real rows (TFNS
train + FPB train from ../shared/data, answer-only labels). Each adds one change to the one before,
ending at what ``build/recipes/smollm2-135m-fingpt.yaml`` trains with:

    plain        float32, LoRA dropout 0.1, batch 16, every row padded to 128, random batches, [B, T, V] logits
    grouped      + batches of similar length, padded to their longest row only
    fast-loss    + vocabulary projection only at the answer positions (finsent.build.trainer.token_loss)
    shared       + each distinct instruction prefix run once per batch (finsent.build.trainer.shared_prefix_hidden)
    no-dropout   + LoRA dropout 0 (its Bernoulli masks are a sixth of a CPU step)
    bf16         + frozen base in bfloat16 under bf16 autocast (fast only on CPUs with AMX or AVX-512 BF16)
    eager        + transformers' eager attention instead of sdpa (sdpa's bf16 backward is slow on a CPU)
    batch32      + 32 rows a step instead of 16 (a CPU step is mostly per-operation overhead)

The configurations take turns step by step in one process (after one warm-up round), so a machine
shared with other jobs slows them all alike and the ratios stay meaningful. Configurations with the
same model settings share one model. Memory is the resident set sampled every 5 ms during a
configuration's steps (after ``malloc_trim``), above the resident set before them. Real tokens/s
counts non-pad tokens. First, the plain, fast and shared-prefix losses are compared on one batch
(value and LoRA gradients). Writes build/bench/results/finetune_speed.json.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import random
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT.parent / "shared" / "data"
PLAIN = dict(pad_to=128, grouped=False, fast=False, share=False, dropout=0.1, bf16=False, attn="sdpa", batch=16)
STEPS = [  # (name, what it changes): each configuration is the one before plus its change
    ("plain", {}),
    ("grouped", dict(pad_to=None, grouped=True)),
    ("fast-loss", dict(fast=True)),
    ("shared", dict(share=True)),
    ("no-dropout", dict(dropout=0.0)),
    ("bf16", dict(bf16=True)),
    ("eager", dict(attn="eager")),
    ("batch32", dict(batch=32)),
]
CONFIGS: dict[str, dict] = {}
_config = PLAIN
for _name, _change in STEPS:
    CONFIGS[_name] = _config = {**_config, **_change}


def batches(encoded: list[dict], batch_size: int, grouped: bool, count: int, seed: int) -> list[list[int]]:
    """``count`` index batches: random rows, or rows of similar length (transformers' LengthGroupedSampler)."""
    import torch
    from transformers.trainer_pt_utils import LengthGroupedSampler

    g = torch.Generator().manual_seed(seed)
    if grouped:
        lengths = [len(e["input_ids"]) for e in encoded]
        order = list(LengthGroupedSampler(batch_size, lengths=lengths, generator=g))
    else:
        order = torch.randperm(len(encoded), generator=g).tolist()
    chunks = [order[i : i + batch_size] for i in range(0, len(order) - batch_size + 1, batch_size)]
    random.Random(seed).shuffle(chunks)  # the sampler puts its longest batch first: take a fair sample
    return chunks[:count]


class RssPeak:
    """Peak resident set (MB) of this process while the block runs, sampled every 5 ms."""

    def __enter__(self):
        import psutil

        ctypes.CDLL("libc.so.6").malloc_trim(0)  # give freed heap back, so each block starts level
        self.proc = psutil.Process()
        self.before = self.peak = self.proc.memory_info().rss
        self.running = True
        self.thread = threading.Thread(target=self._sample, daemon=True)
        self.thread.start()
        return self

    def _sample(self):
        while self.running:
            self.peak = max(self.peak, self.proc.memory_info().rss)
            time.sleep(0.005)

    def __exit__(self, *exc):
        self.running = False
        self.thread.join()
        self.peak = max(self.peak, self.proc.memory_info().rss)
        self.extra_mb = (self.peak - self.before) / 2**20


def step(model, optim, loss_fn, batch, bf16: bool, share: bool) -> float:
    import torch

    extra = {"prefix_len": batch["prefix_len"]} if share else {}
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        loss_sum, count = loss_fn(model, batch["input_ids"], batch["attention_mask"], batch["labels"], **extra)
    (loss_sum / count).backward()
    optim.step()
    optim.zero_grad(set_to_none=True)
    return float(loss_sum / count)


def compare_losses(model, batch) -> dict:
    """Plain, fast and shared-prefix loss on one batch: the values and the LoRA gradients must agree."""
    from functools import partial

    from finsent.build.trainer import reference_loss, token_loss

    out = {}
    for name, fn in (("plain", reference_loss), ("fast", token_loss),
                     ("shared", partial(token_loss, prefix_len=batch["prefix_len"]))):
        model.zero_grad(set_to_none=True)
        loss_sum, count = fn(model, batch["input_ids"], batch["attention_mask"], batch["labels"])
        (loss_sum / count).backward()
        out[name] = (float(loss_sum / count), [p.grad.clone() for p in model.parameters() if p.requires_grad])
    model.zero_grad(set_to_none=True)
    check = {f"{name}_loss": loss for name, (loss, _) in out.items()}
    for name in ("fast", "shared"):
        check[f"{name}_max_grad_diff"] = max(float((a - b).abs().max()) for a, b in zip(out["plain"][1], out[name][1]))
    return check


def run(args) -> dict:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from finsent.build.data import collate, encode_example, load_mixture
    from finsent.build.finetune import add_lora
    from finsent.build.trainer import cpu_has_native_bf16, reference_loss, token_loss
    from finsent.core.prompts import PromptEncoder
    from finsent.core.recipes import DataSource, FinetuneSection

    torch.set_num_threads(args.threads)
    tok = AutoTokenizer.from_pretrained(args.base)
    names = args.configs.split(",")
    models = {}  # (dropout, bf16, attn) -> (peft model, optimizer): configurations that differ only in data share one

    def model_for(cfg: dict):
        key = (cfg["dropout"], cfg["bf16"], cfg["attn"])
        if key not in models:
            torch.manual_seed(0)  # the same LoRA start for every model
            base = AutoModelForCausalLM.from_pretrained(args.base, attn_implementation=cfg["attn"],
                                                        dtype=torch.bfloat16 if cfg["bf16"] else torch.float32)
            # The recipes' LoRA (r8, alpha 32, all 7 projections), as finsent finetune builds it.
            model = add_lora(base, FinetuneSection(lora_dropout=cfg["dropout"]))
            for name, p in model.named_parameters():  # non-zero B, so every LoRA matrix gets gradients
                if "lora_B" in name:
                    torch.nn.init.normal_(p, std=0.01)
            model.train()
            models[key] = (model, torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5))
        return models[key]

    sources = [DataSource(path=str(DATA / "tfns" / "sent_train.csv"), schema="tfns", limit=3000),
               DataSource(path=str(DATA / "fpb" / "train.jsonl"), schema="fpb", limit=1000)]
    examples = load_mixture(sources, seed=0).examples
    encoder = PromptEncoder(tok, max_length=128)
    encoded = [encode_example(encoder, ex, "answer") for ex in examples]

    def make(idx, pad_to):
        batch = collate([encoded[i] for i in idx], tok.pad_token_id)
        if pad_to:
            width = pad_to - batch["input_ids"].shape[1]
            pad = torch.nn.functional.pad
            batch = {"input_ids": pad(batch["input_ids"], (0, width), value=tok.pad_token_id),
                     "attention_mask": pad(batch["attention_mask"], (0, width), value=0),
                     "labels": pad(batch["labels"], (0, width), value=-100), "prefix_len": batch["prefix_len"]}
        return batch

    plans = {n: [make(idx, CONFIGS[n]["pad_to"]) for idx in
                 batches(encoded, CONFIGS[n]["batch"], CONFIGS[n]["grouped"], args.steps + 1, seed=0)] for n in names}
    first, _ = model_for(CONFIGS[names[0]])
    first.eval()  # no dropout for the equality check
    check = compare_losses(first, plans[names[-1]][0])
    first.train()
    print(f"loss check on one batch: plain {check['plain_loss']:.6f} fast {check['fast_loss']:.6f} "
          f"shared {check['shared_loss']:.6f}; max |grad diff| vs plain: fast {check['fast_max_grad_diff']:.2e} "
          f"shared {check['shared_max_grad_diff']:.2e}", flush=True)
    stats = {n: {"times": [], "tokens": 0, "padded": 0, "rows": 0, "extra_mb": 0.0} for n in names}
    for rnd in range(args.steps + 1):
        for n in names:
            cfg, batch = CONFIGS[n], plans[n][rnd]
            model, optim = model_for(cfg)
            with RssPeak() as mem:
                start = time.perf_counter()
                step(model, optim, token_loss if cfg["fast"] else reference_loss, batch, cfg["bf16"], cfg["share"])
                took = time.perf_counter() - start
            print(f"round {rnd} {n}: {took:.2f} s, {int(batch['attention_mask'].sum())} real tokens, "
                  f"+{mem.extra_mb:.0f} MB", flush=True)
            if rnd:  # round 0 is the warm-up (allocator, kernels)
                s = stats[n]
                s["times"].append(took)
                s["tokens"] += int(batch["attention_mask"].sum())
                s["padded"] += batch["input_ids"].numel()
                s["rows"] += batch["input_ids"].shape[0]
                s["extra_mb"] = max(s["extra_mb"], mem.extra_mb)
        print(f"round {rnd}/{args.steps} done", flush=True)
    rows = []
    for n in names:
        s, k = stats[n], len(stats[n]["times"])
        seconds = sum(s["times"])
        rows.append({"config": n, **CONFIGS[n], "steps": k,
                     "seconds_per_step": round(seconds / k, 3),
                     "median_seconds_per_step": round(sorted(s["times"])[k // 2], 3),
                     "tokens_per_second": round(s["tokens"] / seconds, 1),
                     "rows_per_second": round(s["rows"] / seconds, 2),
                     "real_tokens_per_row": round(s["tokens"] / s["rows"], 1),
                     "padded_tokens_per_row": round(s["padded"] / s["rows"], 1),
                     "step_memory_mb": round(s["extra_mb"], 1)})
    return {"base": args.base, "threads": args.threads, "cpu_native_bf16": cpu_has_native_bf16(),
            "loss_check": check, "rows": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", required=True, help="model folder (e.g. the 40 %% pruned SmolLM2)")
    parser.add_argument("--steps", type=int, default=6, help="timed optimizer steps per configuration")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--configs", default=",".join(CONFIGS), help="comma-separated subset of " + ", ".join(CONFIGS))
    parser.add_argument("--out", default=str(ROOT / "build" / "bench" / "results" / "finetune_speed.json"))
    args = parser.parse_args()
    unknown = sorted(set(args.configs.split(",")) - set(CONFIGS))
    if unknown:
        parser.error(f"unknown configuration(s) {', '.join(unknown)}; choose from {', '.join(CONFIGS)}")
    result = run(args)
    rows = result["rows"]
    base = rows[0]["tokens_per_second"]
    for r in rows:
        r["speedup_vs_first"] = round(r["tokens_per_second"] / base, 2)
        print(f"{r['config']:11s} {r['seconds_per_step']:7.3f} s/step (median {r['median_seconds_per_step']:.3f}) "
              f"{r['tokens_per_second']:8.1f} real tokens/s "
              f"{r['rows_per_second']:6.2f} rows/s {r['speedup_vs_first']:5.2f}x  "
              f"(pad {r['padded_tokens_per_row']:.0f} / real {r['real_tokens_per_row']:.0f} tokens a row)  "
              f"step memory +{r['step_memory_mb']:.0f} MB")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
