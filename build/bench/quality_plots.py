"""The plots of quality_table.py: dev accuracy against parameters for every run (quality.png) and for the pruning
cost (pruning_cost.png), each written atomically (temporary sibling, then ``os.replace``)."""

from __future__ import annotations

from pathlib import Path


def _save_png(fig, path: Path) -> None:
    """``fig`` as a PNG at ``path``, through a temporary sibling and ``os.replace``."""
    import io

    from finsent.core.outputs import write_bytes_atomic

    buffer = io.BytesIO()
    fig.savefig(buffer, dpi=100, format="png")
    write_bytes_atomic(path, buffer.getvalue())


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot(rows: list[dict], path: Path) -> None:
    import textwrap

    plt = _pyplot()
    methods = sorted({r["method"] for r in rows if r["dev3"] is not None})  # runs with TFNS/FPB dev rows only
    # The method names are long (prune score, teacher folder): the legend goes under the axes, wrapped.
    fig, ax = plt.subplots(figsize=(9, 4.5 + 0.3 * len(methods)))
    for method in methods:
        mine = [r for r in rows if r["method"] == method and r["dev3"] is not None]
        ax.plot([r["params"] / 1e6 for r in mine], [r["dev3"] for r in mine], marker="o",
                label=textwrap.fill(method, 110))
        for r in mine:
            ax.annotate(r["prune"], (r["params"] / 1e6, r["dev3"]), textcoords="offset points", xytext=(4, 4),
                        fontsize=8)
    ax.set_title("Accuracy against size: SmolLM2-135M pruned, fine-tuned")
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=1)
    _finish(fig, ax, path)


def plot_cost(cost: dict, path: Path) -> None:
    plt = _pyplot()
    rows = [r for r in cost["rows"] if r["dev_accuracy"] is not None]
    fig, ax = plt.subplots(figsize=(6.5, 4))
    xs, ys = [r["params"] / 1e6 for r in rows], [r["dev_accuracy"] for r in rows]
    ax.plot(xs, ys, marker="o")
    for r, x, y in zip(rows, xs, ys):
        ax.annotate(f"{100 * r['removed_share']:.0f} %", (x, y), textcoords="offset points", xytext=(4, 4),
                    fontsize=8)
    ax.set_title(f"What pruning costs: {cost['recipe']} (labels: share of MLP neurons removed)\n"
                 f"trained on {'; '.join(cost['devices']) or 'a CPU the runs did not record'}", fontsize=9)
    _finish(fig, ax, path)


def _finish(fig, ax, path: Path) -> None:
    """The axes both plots share (dev accuracy against parameters), then the PNG written and the figure closed."""
    import matplotlib.pyplot as plt

    ax.set_xlabel("parameters (millions)")
    ax.set_ylabel("dev accuracy (TFNS + FPB rows held out)")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    try:
        _save_png(fig, path)
    finally:
        plt.close(fig)
