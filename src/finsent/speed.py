"""``finsent bench``: items/s, latency and memory of the card's generation loop against our label scorer.

One run, one machine, the same real TFNS validation headlines for every configuration:

    card loop   classify(mode="generate", batch_size=1): greedy, 15 new tokens, no_repeat_ngram_size 3
    score b1    our scorer one text at a time (float32, exact)
    score bN    our scorer at each batch size (float32, exact)
    int8 bN     the scorer after dynamic int8 quantization of every Linear (CPU only; approximate)
    best        the fastest row, repeated at every thread count of ``--threads`` when several are given

Requests of all configurations run interleaved (``measure_interleaved``), so on a shared machine every
row sees the same drifting load; float32 and int8 run on two resident copies of the model. Plus the
compute floor: FLOPs per item over the GEMM throughput measured in the same run (see
``speed_floor.py``). Writes ``speed.json`` (the release contract), ``speed.md`` and ``speed.png``.

    finsent bench --shape llama-finsent-s --n 32 --gen-n 16 --threads 1 2 --out eval/bench/llama-finsent-s
    finsent bench --model smollm2 --schemes 3 7 --int8-accuracy 256 --out eval/bench/smollm2
"""

from __future__ import annotations

import logging
import os
import platform
import statistics
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from .cli import positive_int
from .errors import UsageError
from .reports import write_report
from .speed_floor import compute_floor, floor_items_per_second

logger = logging.getLogger(__name__)

TFNS_VALID = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "tfns" / "sent_valid.csv"
CARD = "card loop"


def register(sub) -> None:
    p = sub.add_parser("bench", help="speed of the card's generation loop vs label scoring (speed.json)",
                       description=__doc__.split("\n\n")[1] if __doc__ else None)
    which = p.add_mutually_exclusive_group()
    which.add_argument("--model", help="folder, Hub id or 'smollm2' (default: the usual resolution order)")
    which.add_argument("--shape", choices=["llama-finsent-s"],
                       help="random weights with the exact shape of the published model")
    p.add_argument("--schemes", nargs="+", choices=["3", "7"], default=["3"])
    p.add_argument("--batch-sizes", nargs="+", type=positive_int, default=[1, 8, 32])
    p.add_argument("--n", type=positive_int, default=64, help="texts per scorer configuration (default 64)")
    p.add_argument("--gen-n", type=positive_int, help="texts for the card's loop (default: min(n, 32))")
    p.add_argument("--threads", nargs="+", type=positive_int,
                   help="torch threads; several = the best configuration is re-measured at each")
    p.add_argument("--no-int8", action="store_true", help="skip the int8 rows")
    p.add_argument("--int8-accuracy", type=positive_int, metavar="N",
                   help="also score the first N labelled TFNS rows in float32 and int8 (real models only)")
    p.add_argument("--texts", type=Path, default=TFNS_VALID,
                   help="csv/jsonl/json/parquet with a 'text' column (default: TFNS validation)")
    p.add_argument("--out", type=Path, default=Path("runs/bench"), help="output folder (default runs/bench)")
    p.set_defaults(func=_bench)


def _bench(args) -> int:
    if args.int8_accuracy and args.shape:
        raise UsageError("--int8-accuracy needs real weights (--model), not --shape")
    result = run_bench(args.model, args.out, shape=args.shape, schemes=tuple(args.schemes),
                       batch_sizes=tuple(args.batch_sizes), n=args.n, gen_n=args.gen_n,
                       threads=tuple(args.threads or ()), int8=not args.no_int8, texts_file=args.texts)
    print(format_table(result))
    print(f"\nwrote {args.out / 'speed.json'}, speed.md, speed.png")
    if args.int8_accuracy:
        from .speed_quality import format_int8, int8_accuracy

        print("\n" + format_int8(int8_accuracy(result["model"], args.texts, args.int8_accuracy, args.out)))
    return 0


class SpeedTextsError(UsageError, ValueError):
    """A speed-texts file that cannot be used; the message names the file, the row and the problem."""


class SpeedTextsNotFoundError(UsageError, FileNotFoundError):
    """The speed-texts file does not exist."""


def load_texts(path: Path, n: int) -> list[str]:
    """The first ``n`` texts (field ``text``) of a csv / jsonl / json / parquet file, e.g. TFNS validation.

    Read by ``finsent.tables.read_table`` and checked by ``prompts.check_text``, like every other input;
    an unusable row is an error naming the file and the row.
    """
    from .prompts import InputError, check_text
    from .tables import BadRow, TableError, read_table

    path = Path(path)
    if not path.is_file():
        raise SpeedTextsNotFoundError(
            f"benchmark texts not found: {path} (TFNS validation CSV, see shared/data/README.md)")
    texts: list[str] = []
    try:
        for where, row in read_table(path, columns=["text"]):
            if len(texts) == n:
                break
            if isinstance(row, BadRow):
                raise SpeedTextsError(f"{where}: {row.problem}")
            if row.get("text") is None:
                raise SpeedTextsError(f"{where}: no 'text' field (fields: {', '.join(map(str, row)) or 'none'})")
            try:
                texts.append(check_text(row["text"]))
            except InputError as exc:
                raise SpeedTextsError(f"{where}: field 'text': {exc}") from None
    except TableError as exc:
        raise SpeedTextsError(str(exc)) from None
    if not texts:
        raise SpeedTextsError(f"{path}: no texts")
    if len(texts) < n:
        logger.warning("%s has only %d texts (asked for %d)", path, len(texts), n)
    return texts


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
class Job:
    """One configuration: its classifier, texts split into requests of ``batch_size``, and what was timed."""

    config: str
    clf: object
    texts: list[str]
    scheme: str
    mode: str
    batch_size: int
    threads: int
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
        dtype = str(self.clf.dtype).replace("torch.", "")
        quantized = any(type(m).__module__.startswith("torch.ao.nn.quantized") for m in self.clf.model.modules())
        return {
            "config": self.config, "exact": not quantized, "dtype": "int8 dynamic" if quantized else dtype,
            "mode": self.mode, "scheme": self.scheme, "batch_size": self.batch_size, "n": len(self.texts),
            "items_per_second": len(self.texts) / seconds, "p50_ms": statistics.median(ms),
            "p95_ms": _percentile(ms, 95), "peak_memory_mb": self.peak_mb, "seconds": seconds,
            "threads": self.threads or torch.get_num_threads(),
        }


def measure_interleaved(jobs: list[Job]) -> list[dict]:
    """Time every job's requests, interleaved so that all jobs sample the same stretch of time.

    On a machine shared with other work the load drifts; running configurations one after another
    would compare them under different loads. Here the next request always goes to the job with the
    smallest fraction done, so every configuration progresses through the run together. A request that
    follows a change of thread count is run once untimed first.
    Latency = one request (``batch_size`` texts), in ms; peak memory over that job's requests.
    """
    import torch
    from tqdm.auto import tqdm

    queues = [job.requests() for job in jobs]
    for job, queue in zip(jobs, queues):  # warm-up (prefix KV cache, first-call allocations): two texts
        torch.set_num_threads(job.threads or torch.get_num_threads())
        job.run(queue[0][:2])
    total = sum(len(q) for q in queues)
    with tqdm(total=total, desc="bench", unit="request") as bar:
        done = [0] * len(jobs)
        while sum(done) < total:
            i = min((k for k in range(len(jobs)) if done[k] < len(queues[k])), key=lambda k: done[k] / len(queues[k]))
            job = jobs[i]
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
    return [job.row() for job in jobs]


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    lo, hi = int(rank), min(int(rank) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (rank - lo)


def _load(model, shape, device):
    """(classifier, label, bytes_on_disk, tokenizer note) for a model folder / id, or a random shape."""
    import torch

    from .classify import FinSentClassifier

    if shape:
        from .bench_shape import llama3_tokenizer, random_shape_model

        tokenizer, note = llama3_tokenizer()
        dtype = torch.bfloat16 if device.type == "cuda" else torch.float32  # the same choice as dtype="auto"
        net = random_shape_model(shape, dtype=dtype).to(device)
        return FinSentClassifier(net, tokenizer, source=f"random {shape}"), shape, None, note
    dtype = "auto" if device.type == "cuda" else torch.float32
    clf = FinSentClassifier.from_pretrained(model, dtype=dtype, device=device)
    folder = Path(clf.source)
    size = sum(f.stat().st_size for f in folder.glob("*.safetensors")) if folder.is_dir() else None
    return clf, Path(clf.source).name, size or None, "the model's own tokenizer"


def run_bench(model: str | Path | None, out_dir: Path, *, shape: str | None = None, schemes=("3",),
              batch_sizes=(1, 8, 32), n: int = 64, classifier=None, gen_n: int | None = None,
              threads: tuple[int, ...] = (), int8: bool = True, texts_file: Path = TFNS_VALID) -> dict:
    """Measure every configuration side by side; write speed.json / speed.md / speed.png; return the dict."""
    import torch

    from .classify import FinSentClassifier

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
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
    plan = [(CARD, "generate", s, 1, gen_texts) for s in schemes]
    plan += [(f"score b{b}", "score", s, b, texts) for s in schemes for b in batch_sizes]
    floor = compute_floor(clf, texts, schemes, quantized=False)

    jobs = [Job(config, clf, items, scheme, mode, bs, base_threads) for config, mode, scheme, bs, items in plan]
    if int8 and device.type == "cpu":
        import copy

        # A second, quantized model, so float32 and int8 rows run interleaved under the same load. The
        # copy shares every float parameter with the original (memo), so only the int8 weights are new:
        # a plain deepcopy would hold two float32 models at once (7.3 GB for the published shape).
        shared = {id(p): p for p in clf.model.parameters()}
        clf8 = FinSentClassifier(copy.deepcopy(clf.model, memo=shared), clf.tokenizer, source=clf.source)
        clf8.quantize("int8")
        floor.update(compute_floor(clf8, texts, schemes, quantized=True))
        jobs += [Job(f"int8 b{b}", clf8, texts, s, "score", b, base_threads) for s in schemes for b in batch_sizes]
    rows = measure_interleaved(jobs)
    for scheme in schemes:  # the fastest score row, re-measured at every thread count (interleaved again)
        best = max((r for r in rows if r["mode"] == "score" and r["scheme"] == scheme),
                   key=lambda r: r["items_per_second"])
        rows.append({**best, "config": f"best ({best['config']})"})
        if len(threads) > 1:
            job_of = next(j for j in jobs if j.config == best["config"] and j.scheme == scheme)
            sweep = [Job(f"best ({best['config']}, {t} threads)", job_of.clf, texts, scheme, "score",
                         best["batch_size"], t) for t in threads]
            rows += measure_interleaved(sweep)
    torch.set_num_threads(base_threads)
    for row in rows:
        card = next(r for r in rows if r["config"] == CARD and r["scheme"] == row["scheme"])
        row["speedup_vs_card"] = row["items_per_second"] / card["items_per_second"]
        if row["mode"] == "score":
            key = "int8" if row["dtype"] == "int8 dynamic" else "float"
            row["of_floor"] = row["items_per_second"] / floor_items_per_second(floor, row["scheme"], key)

    result = {
        "device": torch.cuda.get_device_name() if device.type == "cuda" else _cpu_name(),
        "threads": torch.get_num_threads(), "model": str(clf.source), "shape": shape or label,
        "params": params, "bytes_on_disk": size, "bytes_fp16": 2 * params,  # fp16 safetensors, as published
        "memory": "cuda_allocated" if device.type == "cuda" else "process_rss",  # what peak_memory_mb measured
        "tokenizer": note, "texts": f"{texts_file.name} first {n}",
        "torch": torch.__version__, "rows": rows, "compute_floor": floor,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    write_report("speed", result, out_dir / "speed.json")
    (out_dir / "speed.md").write_text(format_table(result) + "\n")
    plot(result, out_dir / "speed.png")
    return result


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            name = next(line.split(":", 1)[1].strip() for line in fh if line.startswith("model name"))
    except (OSError, StopIteration):
        name = platform.processor() or platform.machine()
    return f"CPU {name}, {os.cpu_count()} cores"


def format_table(result: dict) -> str:
    """The Markdown table of a speed.json (printed by the CLI, written as speed.md)."""
    floor = result["compute_floor"]
    lines = [
        f"Speed of `{result['model']}` ({result['params']:,} parameters) on {result['device']}, "
        f"torch {result['torch']}, {result['threads']} threads; texts: {result['texts']}; "
        f"tokenizer: {result['tokenizer']}.",
        "",
        "| config | scheme | mode | batch | threads | items/s | p50 ms | p95 ms | peak MiB | x card | of floor |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in result["rows"]:
        of_floor = f"{100 * r['of_floor']:.0f} %" if "of_floor" in r else "-"
        lines.append(
            f"| {r['config']} | {r['scheme']} | {r['mode']} | {r['batch_size']} | {r['threads']} | "
            f"{r['items_per_second']:.2f} | {r['p50_ms']:.0f} | {r['p95_ms']:.0f} | {r['peak_memory_mb']:.0f} | "
            f"{r['speedup_vs_card']:.1f} | {of_floor} |"
        )
    lines += ["", "Compute floor (same run): " + ", ".join(
        f"{k} {v:.1f} GFLOP/s" for k, v in floor.items() if k.startswith("gemm_gflops")
    ) + "; " + ", ".join(
        f"{s}-class {floor['flops_per_item'][s] / 1e9:.2f} GFLOP/item ({floor['tokens_per_item'][s]:.1f} tokens)"
        for s in floor["flops_per_item"]
    ) + "."]
    if "dtype_probe_gflops" in floor:
        lines.append("dtype probe, [32 x hidden] @ [hidden x intermediate] GEMM: " + ", ".join(
            f"{k} {v:.1f} GFLOP/s" for k, v in floor["dtype_probe_gflops"].items()) + ".")
    return "\n".join(lines)


def plot(result: dict, path: Path) -> None:
    """Horizontal bars of items/s per configuration (log scale), one colour per scheme."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = result["rows"]
    fig, ax = plt.subplots(figsize=(8, 0.35 * len(rows) + 1.5))
    colours = {"3": "tab:blue", "7": "tab:orange"}
    names = [f"{r['config']} [{r['scheme']}-class, {r['threads']}t]" for r in rows]
    ax.barh(names, [r["items_per_second"] for r in rows], color=[colours.get(r["scheme"], "grey") for r in rows])
    for i, r in enumerate(rows):
        ax.text(r["items_per_second"], i, f" {r['items_per_second']:.2f} ({r['speedup_vs_card']:.0f}x)",
                va="center", fontsize=8)
    ax.set_xscale("log")
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())  # minor labels collide on a short span
    ax.invert_yaxis()
    ax.set_xlabel("items per second (log scale)")
    ax.set_title(f"{result['shape']} on {result['device']}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
