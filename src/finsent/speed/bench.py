"""``finsent bench``: items/s, latency and memory of the card's generation loop against our label scorer.

One run, one machine, the same real TFNS validation headlines for every configuration:

    card loop     classify(mode="generate", batch_size=1), float32: greedy, 15 new tokens, no_repeat_ngram_size 3
    score bN      our scorer, float32 (exact), at each batch size
    <variant> bN  the scorer in another precision or layout (``speed_variants.py``: bf16, w8a8, int8, packed)
    X @ N threads the fastest row re-measured at every thread count of ``--threads`` when several are given
    best          the fastest row that is exact or whose accuracy cost, measured on a tuned release by
                  ``finsent bench-quality`` and passed with ``--quality`` (or added later with
                  ``finsent bench-quality --apply speed.json``), is within 0.5 point of float32

Requests of all configurations run interleaved (``measure_interleaved``), so on a shared machine every
row sees the same drifting load; each variant holds its own resident copy of the weights. Plus the
compute floor: FLOPs per item over the rate of the scorer's own projection module (``speed_floor.py``)
and a profile of one request of the fastest row. Writes ``speed.json`` (the release contract), ``speed.md``
and ``speed.png``.

    finsent bench-quality RELEASE --out eval/bench/llama-finsent-s
    finsent bench --shape llama-finsent-s --quality eval/bench/llama-finsent-s/quality.json \\
        --out eval/bench/llama-finsent-s
"""

from __future__ import annotations

import logging
import os
import statistics
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from finsent.core.classify import FinSentClassifier
from finsent.core.precision import auto_dtype, measure_cpu_dtypes
from finsent.core.provenance import cpu_flags, cpu_name, git_commit
from finsent.core.texts import load_texts
from finsent.speed.floor import compute_floor, floor_items_per_second, mlp_linear, module_gflops
from finsent.speed.quality import apply_quality
from finsent.speed.report import profile_request, write_speed
from finsent.speed.shape import llama3_tokenizer, random_shape_model
from finsent.speed.variants import (
    base_of,
    build,
    check_memory,
    describe,
    unavailable,
)

logger = logging.getLogger(__name__)

CARD = "card loop"
RELEASE_VARIANTS = ("float32", "bf16", "int8")


class PeakMemory:
    """Peak memory of a block in MiB: CUDA max allocated, else the process RSS sampled every 5 ms."""

    def __init__(self, device):
        self.cuda = getattr(device, "type", str(device)) == "cuda"
        self.peak_mb = 0.0

    def __enter__(self):
        import torch

        if self.cuda:
            torch.cuda.reset_peak_memory_stats()
        else:
            self._stop = threading.Event()
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def _sample(self):
        page = os.sysconf("SC_PAGE_SIZE")
        while True:
            with open("/proc/self/statm") as fh:
                rss = int(fh.read().split()[1]) * page / 2**20
            self.peak_mb = max(self.peak_mb, rss)
            if self._stop.wait(0.005):
                return

    def __exit__(self, *exc):
        import torch

        if self.cuda:
            torch.cuda.synchronize()
            self.peak_mb = torch.cuda.max_memory_allocated() / 2**20
        else:
            self._stop.set()
            self._thread.join()


@dataclass
class Measurement:
    """One configuration: its classifier, texts split into requests of ``batch_size``, and what was timed."""

    config: str
    clf: object
    texts: list[str]
    scheme: str
    mode: str
    batch_size: int
    threads: int
    variant: str | None = None  # None for the card loop
    latencies: list = field(default_factory=list)  # seconds per request
    peak_mb: float = 0.0

    def requests(self) -> list[list[str]]:
        return [self.texts[i : i + self.batch_size] for i in range(0, len(self.texts), self.batch_size)]

    def run(self, chunk: list[str], kind: str = "tweet") -> None:
        self.clf.classify(chunk, self.scheme, kind=kind, mode=self.mode, batch_size=self.batch_size)

    def row(self) -> dict:
        import torch

        seconds = sum(self.latencies)
        ms = [1000 * t for t in self.latencies]
        row = {
            "config": self.config, "variant": self.variant, "exact": self.variant in (None, "float32"),
            "dtype": describe(self.variant or "float32", self.clf), "mode": self.mode, "scheme": self.scheme,
            "batch_size": self.batch_size, "n": len(self.texts),
            "items_per_second": len(self.texts) / seconds, "p50_ms": statistics.median(ms),
            "p95_ms": _percentile(ms, 95), "peak_memory_mb": self.peak_mb, "seconds": seconds,
            "threads": self.threads or torch.get_num_threads(),
        }
        if getattr(self.clf, "pack_tokens", None):
            row["pack_tokens"] = self.clf.pack_tokens
        return row


def measure_interleaved(measurements: list[Measurement]) -> list[dict]:
    """Time every job's requests, interleaved so that all measurements sample the same stretch of time.

    On a machine shared with other work the load drifts; running configurations one after another
    would compare them under different loads. Here the next request always goes to the job with the
    smallest fraction done, so every configuration progresses through the run together. A request that
    follows a change of thread count is run once untimed first.
    Latency = one request (``batch_size`` texts), in ms; peak memory over that job's requests.
    """
    import torch
    from tqdm.auto import tqdm

    queues = [job.requests() for job in measurements]
    for job, queue in zip(measurements, queues):  # warm-up (prefix KV cache, first-call allocations): two texts
        torch.set_num_threads(job.threads or torch.get_num_threads())
        job.run(queue[0][:2])
    total = sum(len(q) for q in queues)
    with tqdm(total=total, desc="bench", unit="request") as bar:
        done = [0] * len(measurements)
        while sum(done) < total:
            i = min((k for k in range(len(measurements)) if done[k] < len(queues[k])),
                    key=lambda k: done[k] / len(queues[k]))
            job = measurements[i]
            if job.threads and job.threads != torch.get_num_threads():
                # A thread-count switch makes the next request pay for the thread pool and the kernels'
                # per-thread buffers (measured ~10 % slower); run that request once untimed.
                torch.set_num_threads(job.threads)
                job.run(queues[i][done[i]])
            sync = torch.cuda.synchronize if job.clf.device.type == "cuda" else (lambda: None)
            with PeakMemory(job.clf.device) as mem:
                start = time.perf_counter()
                job.run(queues[i][done[i]])
                sync()
                job.latencies.append(time.perf_counter() - start)
            job.peak_mb = max(job.peak_mb, mem.peak_mb)
            done[i] += 1
            bar.update()
    return [job.row() for job in measurements]


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    lo, hi = int(rank), min(int(rank) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (rank - lo)


def _load(model, shape, device):
    """(float32 classifier, label, bytes_on_disk, tokenizer note) for a model folder / id, or a random shape."""
    import torch


    if shape:
        tokenizer, note = llama3_tokenizer()
        net = random_shape_model(shape, dtype=torch.float32).to(device)
        return FinSentClassifier(net, tokenizer, source=f"random {shape}"), shape, None, note
    clf = FinSentClassifier.from_pretrained(model, dtype=torch.float32, device=device)
    folder = Path(clf.source)
    size = sum(f.stat().st_size for f in folder.glob("*.safetensors")) if folder.is_dir() else None
    return clf, Path(clf.source).name, size or None, "the model's own tokenizer"


def run_bench(model: str | Path | None, out_dir: Path, *, shape: str | None = None, schemes=("3",),
              batch_sizes=(1, 8, 32), n: int = 64, classifier=None, gen_n: int | None = None,
              threads: tuple[int, ...] = (), variants=RELEASE_VARIANTS, texts_file: Path,
              quality: dict | None = None, pack_tokens: int | None = None, profile: bool = True) -> dict:
    """Measure every configuration side by side; write speed.json / speed.md / speed.png; return the dict.

    The reference (card loop and ``score`` rows) is float32; every other variant is built from it. The
    default variants are the release eval stage's (a few, so ``make release`` stays short); the CLI's are more.
    """
    import torch


    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    load_start = os.getloadavg()[0]  # recorded: another job on the machine shows up here
    if threads:
        torch.set_num_threads(threads[0])
    base_threads = torch.get_num_threads()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if classifier is not None:
        clf, label, size, note = classifier, Path(str(classifier.source)).name, None, "the model's own tokenizer"
        device = clf.device
    else:
        clf, label, size, note = _load(model, shape, device)
    texts = load_texts(texts_file, n)
    gen_texts = texts[: gen_n or min(n, 32)]
    params = sum(p.numel() for p in clf.model.parameters())
    config = clf.model.config
    float_dtype, why = auto_dtype(device, config)
    dtype_auto = {"dtype": str(float_dtype).replace("torch.", ""), "why": why}
    if device.type == "cpu":
        dtype_auto["gflops_32_rows"] = measure_cpu_dtypes(config.hidden_size, config.intermediate_size)
    if device.type == "cpu":
        check_memory(params, [v for v in dict.fromkeys(variants) if not unavailable(v, device, float_dtype)])
    skipped, built, cache = {}, {}, {}
    for variant in dict.fromkeys(variants):
        reason = unavailable(variant, device, float_dtype)
        if reason:
            skipped[variant] = reason
            logger.warning("variant %s skipped: %s", variant, reason)
        else:
            built[variant] = build(variant, clf, float_dtype, cache, pack_tokens)

    measurements = [Measurement(CARD, clf, gen_texts, s, "generate", 1, base_threads) for s in schemes]
    measurements += [Measurement("score" if v == "float32" else v, c, texts, s, "score", b, base_threads, v)
             for v, c in built.items() for s in schemes for b in batch_sizes]
    for job in measurements[len(schemes):]:
        job.config += f" b{job.batch_size}"
    rows = measure_interleaved(measurements)
    floor = compute_floor(clf, texts, schemes)
    fastest_jobs = {}
    for scheme in schemes:  # the fastest score row, re-measured at every thread count (interleaved again)
        fastest = max((r for r in rows if r["mode"] == "score" and r["scheme"] == scheme),
                      key=lambda r: r["items_per_second"], default=None)
        if fastest is None:
            continue
        fastest_jobs[scheme] = next(j for j in measurements if j.config == fastest["config"] and j.scheme == scheme)
        if len(threads) > 1:
            job = fastest_jobs[scheme]
            rows += measure_interleaved([
                Measurement(f"{fastest['config']} @ {t} threads", job.clf, texts, scheme, "score",
                            fastest["batch_size"], t, job.variant) for t in threads])
    torch.set_num_threads(base_threads)
    rates = {}
    for row in rows:
        card = next(r for r in rows if r["config"] == CARD and r["scheme"] == row["scheme"])
        row["speedup_vs_card"] = row["items_per_second"] / card["items_per_second"]
        if row["mode"] == "score":
            # The floor's GEMM: the scorer's own projection module, on the rows one request feeds it.
            m = row["batch_size"] * round(floor["tokens_per_item"][row["scheme"]])
            key = f"{base_of(row['variant'])} m={m}"
            if key not in rates:
                run_clf = built.get(row["variant"]) or clf
                rates[key] = module_gflops(mlp_linear(run_clf), m, run_clf.dtype, device, seconds=0.6)
            row["of_floor"] = row["items_per_second"] / floor_items_per_second(floor, row["scheme"], rates[key])
    floor["gemm_gflops"] = rates
    floor["gemm_shape"] = [config.hidden_size, config.intermediate_size]

    result = {
        "device": torch.cuda.get_device_name() if device.type == "cuda" else cpu_name(),
        "cpu_flags": cpu_flags(), "threads": torch.get_num_threads(), "model": str(clf.source),
        "shape": shape or label, "params": params, "bytes_on_disk": size, "bytes_fp16": 2 * params,
        "memory": "cuda_allocated" if device.type == "cuda" else "process_rss",  # what peak_memory_mb measured
        "tokenizer": note, "texts": f"{texts_file.name} first {n}", "torch": torch.__version__,
        "git_commit": git_commit(), "seed": 0,  # random_shape_model's seed (shape runs)
        "load_average_1min": {"start": load_start, "end": os.getloadavg()[0]},
        "dtype_auto": dtype_auto, "variants_skipped": skipped, "rows": rows, "compute_floor": floor,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    if profile and schemes[0] in fastest_jobs:  # where the time goes in the fastest configuration
        result["profile"] = profile_request(fastest_jobs[schemes[0]])
    return write_speed(apply_quality(result, quality), out_dir)


