"""``finsent bench`` and ``finsent bench-quality``: the speed of label scoring and each variant's accuracy cost."""

from __future__ import annotations

from pathlib import Path

import finsent.speed.bench as bench_module
import finsent.speed.quality as quality_module
from finsent.core.args import positive_int
from finsent.core.outputs import check_report_files
from finsent.core.reports import read_report
from finsent.speed.bench import run_bench
from finsent.speed.quality import apply_quality, format_quality, measure_quality, read_quality
from finsent.speed.report import format_table, write_speed
from finsent.speed.variants import DEFAULT, VARIANTS


def register_bench(sub) -> None:
    p = sub.add_parser("bench", help="speed of the card's generation loop vs label scoring (speed.json)",
                       description=bench_module.__doc__.split("\n\n")[1] if bench_module.__doc__ else None)
    which = p.add_mutually_exclusive_group()
    which.add_argument("--model", help="folder, Hub id or 'smollm2' (default: the usual resolution order)")
    which.add_argument("--shape", choices=["llama-finsent-s"],
                       help="random weights with the exact shape of the published model")
    p.add_argument("--schemes", nargs="+", choices=["3", "7"], default=["3"])
    p.add_argument("--batch-sizes", nargs="+", type=positive_int, default=[1, 8, 32])
    p.add_argument("--n", type=positive_int, default=64, help="texts per scorer configuration (default 64)")
    p.add_argument("--gen-n", type=positive_int, help="texts for the card's loop (default: min(n, 32))")
    p.add_argument("--threads", nargs="+", type=positive_int,
                   help="torch threads; several = the fastest configuration is re-measured at each")
    p.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(DEFAULT),
                   help="scorer configurations besides the card loop (default: %(default)s; the ones this "
                        "hardware cannot run are skipped with a note)")
    p.add_argument("--pack-tokens", type=positive_int, help="query tokens per packed row (default 96)")
    p.add_argument("--quality", type=Path, metavar="QUALITY_JSON",
                   help="accuracy cost of each variant, from `finsent bench-quality` (a tuned release)")
    p.add_argument("--no-profile", action="store_true", help="skip the profile of the fastest row")
    p.add_argument("--texts", type=Path, required=True,
                   help="csv/jsonl/json/parquet with a 'text' column (e.g. ../shared/data/tfns/sent_valid.csv)")
    p.add_argument("--out", type=Path, default=Path("runs/bench"),
                   help="folder to add speed.json / speed.md / speed.png to (default runs/bench)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace speed.* files in --out that `finsent bench` did not write")
    p.set_defaults(func=_bench)


def _is_report(kind: str, name: str):
    """Whether a folder's ``name`` is a readable finsent ``kind`` report (so a rerun may replace it)."""
    def ours(folder: Path) -> bool:
        try:
            read_quality(folder / name) if kind == "bench-quality" else read_report(kind, folder / name)
        except Exception:  # unreadable, another schema, someone else's file: not ours to replace
            return False
        return True
    return ours


def _bench(args) -> int:
    check_report_files(args.out, ("speed.json", "speed.md", "speed.png"), _is_report("speed", "speed.json"),
                       overwrite=args.overwrite, reads=[args.model], what="bench output folder")
    quality = None
    if args.quality:
        quality = read_quality(args.quality)
    result = run_bench(args.model, args.out, shape=args.shape, schemes=tuple(args.schemes),
                       batch_sizes=tuple(args.batch_sizes), n=args.n, gen_n=args.gen_n,
                       threads=tuple(args.threads or ()), variants=tuple(args.variants), texts_file=args.texts,
                       quality=quality, pack_tokens=args.pack_tokens, profile=not args.no_profile)
    print(format_table(result))
    print(f"\nwrote {args.out / 'speed.json'}, speed.md, speed.png")
    return 0


def register_quality(sub) -> None:
    p = sub.add_parser("bench-quality", help="accuracy cost of bf16 / w8a8 / int8 / packed scoring (quality.json)",
                       description=quality_module.__doc__.split("\n\n")[0])
    p.add_argument("release", help="a tuned release folder (or any model finsent can load)")
    p.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(DEFAULT))
    p.add_argument("--n", type=positive_int, help="rows, evenly spaced over the file (default: all)")
    p.add_argument("--batch-size", type=positive_int, default=16)
    p.add_argument("--pack-tokens", type=positive_int, help="query tokens per packed row (default 96)")
    p.add_argument("--data", type=Path, required=True,
                   help="labelled TFNS CSV (e.g. ../shared/data/tfns/sent_valid.csv)")
    p.add_argument("--out", type=Path, required=True, help="folder for quality.json / quality.md")
    p.add_argument("--apply", type=Path, nargs="+", metavar="SPEED_JSON", default=[],
                   help="also put the measured costs on these speed.json files (best rows re-selected, "
                        "speed.md and speed.png rewritten)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace quality.* files in --out that `finsent bench-quality` did not write")
    p.set_defaults(func=_bench_quality)


def _bench_quality(args) -> int:
    check_report_files(args.out, ("quality.json", "quality.md"), _is_report("bench-quality", "quality.json"),
                       overwrite=args.overwrite, reads=[args.release], what="bench-quality output folder")
    for path in args.apply:  # each is rewritten with its md and plot: it must be a speed.json finsent wrote
        read_report("speed", path)
    result = measure_quality(args.release, args.data, args.out, variants=tuple(args.variants), n=args.n,
                             batch_size=args.batch_size, pack_tokens=args.pack_tokens)
    print(format_quality(result))
    print(f"\nwrote {Path(args.out) / 'quality.json'}, quality.md")
    for path in args.apply:
        print("\n" + format_table(write_speed(apply_quality(read_report("speed", path), result), path.parent)))
        print(f"\nrewrote {path}, speed.md, speed.png with the costs")
    return 0


def register(sub) -> None:
    register_bench(sub)
    register_quality(sub)
