"""The learning-curve figure as a self-contained SVG (no plotting library needed): validation reward
against training rounds, one colour per algorithm, the seeds' mean as a line and their range shaded."""

from __future__ import annotations

import csv
from html import escape
from pathlib import Path

import numpy as np

COLOURS = {"gddpg": "#d62728", "ddpg": "#1f77b4"}
LABELS = {"gddpg": "G-DDPG (diffusion actor)", "ddpg": "DDPG (MLP actor)"}


def read_curve(path: Path) -> tuple[np.ndarray, np.ndarray]:
    with Path(path).open() as f:
        rows = list(csv.DictReader(f))
    if not rows:
        raise ValueError(f"{path} has no rows")
    return np.array([float(r["rounds"]) for r in rows]), np.array([float(r["reward"]) for r in rows])


def curves_by_algo(policy_dir: Path) -> dict[str, list[tuple[np.ndarray, np.ndarray]]]:
    out = {}
    for algo in COLOURS:
        found = sorted(Path(policy_dir, algo).glob("seed*/curve.csv"))
        if found:
            out[algo] = [read_curve(f) for f in found]
    return out


def learning_curve_svg(curves: dict[str, list[tuple[np.ndarray, np.ndarray]]], references: dict[str, float],
                       title: str, width: int = 760, height: int = 440) -> str:
    """SVG text. ``references``: horizontal lines (e.g. the oracle and greedy validation rewards)."""
    if not curves:
        raise ValueError("no learning curves to draw")
    left, right, top, bottom = 70, 200, 40, 50
    pw, ph = width - left - right, height - top - bottom
    xs = np.concatenate([x for runs in curves.values() for x, _ in runs])
    ys = np.concatenate([y for runs in curves.values() for _, y in runs] + [np.array(list(references.values()))])
    x0, x1 = 0.0, float(xs.max())
    y0, y1 = float(np.percentile(ys, 2)), float(ys.max())
    pad = 0.05 * (y1 - y0 or 1.0)
    y0, y1 = y0 - pad, y1 + pad

    def px(x):
        return left + pw * (x - x0) / (x1 - x0 or 1.0)

    def py(y):
        return top + ph * (1 - (np.clip(y, y0, y1) - y0) / (y1 - y0))

    el = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" '
          f'font-size="12"><rect width="100%" height="100%" fill="white"/>',
          f'<text x="{left}" y="22" font-size="14">{escape(title)}</text>',
          f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="none" stroke="#444"/>']
    for i in range(6):
        yv = y0 + (y1 - y0) * i / 5
        xv = x0 + (x1 - x0) * i / 5
        el.append(f'<line x1="{left}" x2="{left + pw}" y1="{py(yv):.1f}" y2="{py(yv):.1f}" stroke="#eee"/>')
        el.append(f'<text x="{left - 6}" y="{py(yv) + 4:.1f}" text-anchor="end">{yv:.1f}</text>')
        el.append(f'<text x="{px(xv):.1f}" y="{top + ph + 16}" text-anchor="middle">{xv / 1000:.0f}k</text>')
    el.append(f'<text x="{left + pw / 2}" y="{height - 10}" text-anchor="middle">training rounds</text>')
    el.append(f'<text x="16" y="{top + ph / 2}" transform="rotate(-90 16 {top + ph / 2})" text-anchor="middle">'
              'validation reward (total QoE - price x energy)</text>')
    legend_y = top + ph - 130  # legend in the lower right, clear of the reference labels
    for name, value in references.items():
        el.append(f'<line x1="{left}" x2="{left + pw}" y1="{py(value):.1f}" y2="{py(value):.1f}" stroke="#555" '
                  'stroke-dasharray="5,4"/>')
        el.append(f'<text x="{left + pw + 6}" y="{py(value) + 4:.1f}" fill="#555">{escape(name)} {value:.2f}</text>')
    for algo, runs in curves.items():
        n = min(len(x) for x, _ in runs)
        x = runs[0][0][:n]
        y = np.stack([r[1][:n] for r in runs])
        lo, hi, mean = y.min(0), y.max(0), y.mean(0)
        c = COLOURS.get(algo, "#333")
        band = " ".join(f"{px(a):.1f},{py(b):.1f}" for a, b in zip(x, hi))
        band += " " + " ".join(f"{px(a):.1f},{py(b):.1f}" for a, b in zip(x[::-1], lo[::-1]))
        el.append(f'<polygon points="{band}" fill="{c}" fill-opacity="0.18" stroke="none"/>')
        line = " ".join(f"{px(a):.1f},{py(b):.1f}" for a, b in zip(x, mean))
        el.append(f'<polyline points="{line}" fill="none" stroke="{c}" stroke-width="2"/>')
        el.append(f'<rect x="{left + pw + 8}" y="{legend_y + 60}" width="12" height="12" fill="{c}"/>')
        el.append(f'<text x="{left + pw + 24}" y="{legend_y + 70}">{escape(LABELS.get(algo, algo))}</text>')
        el.append(f'<text x="{left + pw + 24}" y="{legend_y + 84}" fill="#555">{len(runs)} seeds: mean, range</text>')
        legend_y += 40
    el.append("</svg>")
    return "\n".join(el)
