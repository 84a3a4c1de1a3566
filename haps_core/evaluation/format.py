"""An evaluation report as a plain-text table and as a PNG of cost-quality frontiers.

Beside the cost-quality metrics, each row shows the calibration of the router's predicted quality
(ECE, Brier; "-" for rows that predict no quality): per block over its cells, pooled over the
union of all blocks' cells.
"""

import numpy as np

from haps_core.evaluation.report import EvaluationReport
from haps_core.metrics import Frontier

_COLUMNS = (
    ("aiq", "AIQ"),
    ("q_at_c_best", "Q@C_best"),
    ("gap_recovered", "GR"),
    ("saving", "saving"),
    ("saving95", "saving@95"),
)
# calibration of predicted quality; kept apart from _COLUMNS (the metrics a model card records)
_CALIBRATION_COLUMNS = (
    ("ece", "ECE"),
    ("brier", "Brier"),
)
_ALL_COLUMNS = _COLUMNS + _CALIBRATION_COLUMNS


def _fmt(v: float) -> str:
    return "   -  " if v is None or not np.isfinite(v) else f"{v:+.3f}" if v < 0 else f"{v:.3f} "


def _row(name: str, values: dict[str, float]) -> str:
    return f"{name:<22}" + "".join(f"{_fmt(values.get(k, float('nan'))):>11}" for k, _ in _ALL_COLUMNS)


def format_report(report: EvaluationReport) -> str:
    """A plain-text table: one section per block and one pooled."""
    lines = []
    head = f"{'router':<22}" + "".join(f"{t:>11}" for _, t in _ALL_COLUMNS)
    for r in report.blocks:
        sc, sq = r.single_points
        lines.append(
            f"\n== block {r.block.name}: {r.block.n_queries} queries x {len(r.action_keys)} actions; "
            f"best single (train) = {r.action_keys[r.best_action]} "
            f"(Q={sq[r.best_action]:.3f}, C=${sc[r.best_action]:.5f}); oracle Q={r.oracle[1]:.3f} "
            f"C=${r.oracle[0]:.5f}"
        )
        lines.append(head)
        rows = [("zero-router", r.zero.to_dict())]
        for k, v in r.routers.items():
            cal = v.calibration
            rows.append((k, {**v.metrics.to_dict(), **({"ece": cal.ece, "brier": cal.brier} if cal else {})}))
        lines += [_row(name, d) for name, d in rows]
        for key, res in r.comparisons.items():
            lines.append(f"  paired bootstrap {key}: dAIQ = {res.diff:+.4f} +- {res.se:.4f} (se)")
        if "haps" in r.routers:
            shares = r.routers["haps"].shares
            parts = [f"{k}: " + ", ".join(f"{v} {x:.0%}" for v, x in d.items()) for k, d in shares.items()]
            lines.append("  haps decisions over the sweep: " + "; ".join(parts))
    lines.append(
        f"\n== pooled over {len(report.blocks)} blocks (query-weighted; ECE, Brier over all blocks' cells)"
    )
    lines.append(head)
    for name, d in report.pooled.items():
        if name in ("oracle", "best-single"):
            continue
        lines.append(_row(name, d))
    for name in ("best-single", "oracle"):
        if name in report.pooled:
            d = report.pooled[name]
            lines.append(f"{name:<22} Q={d['quality']:.3f} C=${d['cost']:.5f}")
    for key, c in report.pooled_comparisons.items():
        lines.append(
            f"paired bootstrap {key}: dAIQ = {c['diff']:+.4f} +- {c['se']:.4f} (se), z = {c['z']:.2f}"
        )
    return "\n".join(lines)


def plot_report(report: EvaluationReport, path: str) -> None:
    """Cost-quality frontiers of every router per block (log cost axis), saved as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(report.blocks)
    fig, axes = plt.subplots(1, n, figsize=(5.5 * n, 4.5), squeeze=False)
    for ax, r in zip(axes[0], report.blocks):
        sc, sq = r.single_points
        ax.scatter(sc, sq, s=12, c="lightgray", label="single actions", zorder=1)
        zero = Frontier.from_points(sc, sq)
        ax.plot(zero.costs, zero.qualities, "k--", lw=1.2, label="zero-router", zorder=2)
        for name, res in r.routers.items():
            f = Frontier.from_points(res.costs, res.qualities)
            ax.plot(f.costs, f.qualities, marker=".", lw=1.5, label=name, zorder=3)
        ax.scatter(
            [sc[r.best_action]],
            [sq[r.best_action]],
            marker="*",
            s=120,
            c="gold",
            edgecolors="k",
            label="best single (train)",
            zorder=4,
        )
        ax.scatter([r.oracle[0]], [r.oracle[1]], marker="^", s=60, c="red", label="oracle", zorder=4)
        ax.set_xscale("log")
        ax.set_xlabel("mean cost per query (USD, log scale)")
        ax.set_ylabel("mean quality")
        ax.set_title(f"{r.block.name} ({r.block.n_queries} q x {len(r.action_keys)} a)")
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
