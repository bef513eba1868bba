"""What ``finsent bench`` prints and writes besides speed.json: the Markdown table, the plot, the profile."""

from __future__ import annotations

from pathlib import Path

from finsent.core.reports import write_report


def _cost(r: dict) -> tuple[str, str]:
    if r.get("accuracy_delta") is None:
        return ("exact" if r.get("exact") else "not measured"), "-"
    return f"{100 * r['accuracy_delta']:+.2f}", f"{100 * r['label_agreement']:.1f} %"


def format_table(result: dict) -> str:
    """The Markdown table of a speed.json (printed by the CLI, written as speed.md)."""
    floor = result["compute_floor"]
    lines = [
        f"Speed of `{result['model']}` ({result['params']:,} parameters) on {result['device']}, "
        f"torch {result['torch']}, {result['threads']} threads; texts: {result['texts']}; "
        f"tokenizer: {result['tokenizer']}." + (
            " 1-minute load average {start:.2f} at the start, {end:.2f} at the end.".format(
                **result["load_average_1min"]) if result.get("load_average_1min") else ""),
        "",
        "| config | scheme | weights | batch | threads | items/s | p50 ms | p95 ms | peak MiB | x card | of floor "
        "| acc. delta (points) | agreement |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in result["rows"]:
        of_floor = f"{100 * r['of_floor']:.0f} %" if "of_floor" in r else "-"
        delta, agree = _cost(r) if r["mode"] == "score" else ("-", "-")
        lines.append(
            f"| {r['config']} | {r['scheme']} | {r.get('dtype', '-')} | {r['batch_size']} | {r['threads']} | "
            f"{r['items_per_second']:.2f} | {r['p50_ms']:.0f} | {r['p95_ms']:.0f} | {r['peak_memory_mb']:.0f} | "
            f"{r['speedup_vs_card']:.1f} | {of_floor} | {delta} | {agree} |"
        )
    lines += ["", "Compute floor (same run): " + ", ".join(
        f"{s}-class {floor['flops_per_item'][s] / 1e9:.2f} GFLOP/item ({floor['tokens_per_item'][s]:.1f} tokens)"
        for s in floor["flops_per_item"]) + "; the scorer's own MLP projection: " + ", ".join(
        f"{k} {v:.0f} GFLOP/s" for k, v in floor.get("gemm_gflops", {}).items()) + "."]
    if result.get("dtype_auto"):
        lines.append(f"dtype auto: {result['dtype_auto']['dtype']} ({result['dtype_auto']['why']}).")
    if result.get("quality"):
        q = result["quality"]
        lines.append(f"Accuracy cost: measured on `{q['model']}`, {q['data']}, {q['scheme']}-class "
                     f"(float32 accuracy {q['reference_accuracy']:.4f}; {q['device']}); `best` = the fastest "
                     f"row that is exact or within {100 * result['best_rule']['max_accuracy_loss']:.1f} point of "
                     "float32.")
    else:
        lines.append("Accuracy cost not measured (no --quality): `best` is the fastest exact row.")
    if result.get("profile"):
        prof = result["profile"]
        lines.append(f"Where the time goes ({prof['config']}, {prof['scheme']}-class, one request, torch profiler, "
                     "self CPU time): " + ", ".join(f"{op} {100 * share:.0f} %" for op, share in prof["ops"]) + ".")
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


def profile_request(job, top: int = 8) -> dict:
    """Self CPU time of the torch ops of one request of ``job`` (a speed.bench.Measurement), as shares of the total."""
    from torch.profiler import ProfilerActivity, profile

    request = job.requests()[0]
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        job.run(request)
    merged: dict[str, float] = {}
    for event in prof.key_averages():
        merged[_op_name(event.key)] = merged.get(_op_name(event.key), 0.0) + event.self_cpu_time_total
    events = sorted(merged.items(), key=lambda e: -e[1])
    total = sum(t for _, t in events) or 1.0
    return {"config": job.config, "scheme": job.scheme, "batch_size": job.batch_size,
            "ops": [(name, t / total) for name, t in events[:top]], "total_ms": total / 1000}


def _op_name(key: str) -> str:
    """torch.compile's graphs have hashed names; they are w8a8's fused element-wise kernels (quant, dequant,
    SiLU, norms) and their dispatch, counted as one."""
    if key.startswith(("## Call CompiledFxGraph", "Torch-Compiled Region", "TorchDynamo", "CompiledFunction")):
        return "compiled element-wise (torch.compile)"
    return key


def write_speed(result: dict, out_dir: Path) -> dict:
    out_dir = Path(out_dir)
    write_report("speed", result, out_dir / "speed.json")
    (out_dir / "speed.md").write_text(format_table(result) + "\n")
    plot(result, out_dir / "speed.png")
    return result
