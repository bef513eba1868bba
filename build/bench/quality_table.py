"""One table (and plot) of every dev-split run of tfns_accuracy.py: what each training choice gained.

    .venv/bin/python build/bench/quality_table.py    # reads build/bench/results/tfns_accuracy-*.json

Rows are runs that carry a dev score (``finetune.dev_fraction`` > 0), sorted by parameters then dev accuracy:
method (LoRA rank or full), prune ratio, parameters, dev accuracy overall and per source (TFNS tweets, FPB
news), TFNS validation where it was reported (once, for the chosen recipe), label-scoring items/s of the
model as trained, wall time and peak memory. Writes results/quality.md and results/quality.png (dev
accuracy against parameters: the accuracy-versus-size curve of pruning).
"""

from __future__ import annotations

import json
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def runs() -> list[dict]:
    found = []
    for path in sorted(RESULTS.glob("tfns_accuracy-*.json")):
        result = json.loads(path.read_text())
        if not result.get("dev"):
            continue  # older runs chose settings on TFNS validation itself: history, not in this table
        recipe = result["recipe_contents"]
        f, p = recipe["finetune"], recipe["prune"]
        per = {Path(k).parent.name: v["accuracy"] for k, v in result["dev"]["per_source"].items()}
        method = f"LoRA r{f['lora_r']}" if f.get("method", "lora") == "lora" else "full"
        if f.get("distill_from"):
            method += f" + KD (alpha {f['distill_alpha']})"
        found.append({
            "run": path.stem.removeprefix("tfns_accuracy-"), "method": method,
            "prune": f"{p['ratio']:.0%}" if result.get("pruned", True) and p.get("enabled", True) else "0%",
            "params": result["model_params"], "epochs": result["training"].get("epochs"), "lr": f["learning_rate"],
            "dev": result["dev"]["accuracy"], "dev_f1": result["dev"]["macro_f1"], "tfns_dev": per.get("tfns"),
            "fpb_dev": per.get("fpb"), "tfns_valid": (result.get("tfns_validation") or {}).get("accuracy"),
            "seven": (result.get("seven_class_test") or {}).get("accuracy"),
            "items_s": result["dev"].get("items_per_second"), "wall_min": result["wall_seconds"] / 60,
            "resumed": bool(result.get("resumed_from_step")),
            "peak_gb": result["peak_memory_mb"] / 1024, "commit": result["git_commit"][:8],
        })
    return sorted(found, key=lambda r: (r["params"], r["dev"]))


def table(rows: list[dict]) -> str:
    def cell(value, fmt="{}"):
        return "-" if value is None else fmt.format(value)

    lines = ["| run | method | pruned | params | epochs | lr | dev acc | dev macro-F1 | TFNS dev | FPB dev | "
             "TFNS validation | 7-class test | items/s | wall | peak memory | commit |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        lines.append(f"| {r['run']} | {r['method']} | {r['prune']} | {r['params'] / 1e6:.1f}M | {cell(r['epochs'])} | "
                     f"{r['lr']:g} | {r['dev']:.4f} | {r['dev_f1']:.4f} | {cell(r['tfns_dev'], '{:.4f}')} | "
                     f"{cell(r['fpb_dev'], '{:.4f}')} | {cell(r['tfns_valid'], '{:.4f}')} | "
                     f"{cell(r['seven'], '{:.3f}')} | "
                     f"{cell(r['items_s'], '{:.1f}')} | {r['wall_min']:.0f} min{' (resumed part)' * r['resumed']} | "
                     f"{r['peak_gb']:.1f} GB | "
                     f"{r['commit']} |")
    return "\n".join(lines) + "\n"


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4))
    for method in sorted({r["method"] for r in rows}):
        mine = [r for r in rows if r["method"] == method]
        ax.plot([r["params"] / 1e6 for r in mine], [r["dev"] for r in mine], marker="o", label=method)
        for r in mine:
            ax.annotate(r["prune"], (r["params"] / 1e6, r["dev"]), textcoords="offset points", xytext=(4, 4),
                        fontsize=8)
    ax.set_xlabel("parameters (millions)")
    ax.set_ylabel("dev accuracy (TFNS + FPB held out)")
    ax.set_title("Accuracy against size: SmolLM2-135M pruned, fine-tuned")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main() -> None:
    rows = runs()
    if not rows:
        raise SystemExit(f"no run with a dev score in {RESULTS}: run tfns_accuracy.py with finetune.dev_fraction set")
    from finsent.outputs import write_text_atomic

    write_text_atomic(RESULTS / "quality.md", table(rows))
    plot(rows, RESULTS / "quality.png")
    print(table(rows), end="")
    print(f"written {RESULTS / 'quality.md'} and quality.png")


if __name__ == "__main__":
    main()
