"""The learning-curve figure as a self-contained SVG (no plotting library needed): validation reward
against training rounds, one colour per algorithm, the seeds' mean as a line and their range shaded."""

from __future__ import annotations

import csv
from html import escape
from pathlib import Path

import numpy as np

COLOURS = {"gddpg": "#d62728", "gddpg_t1": "#ff9896", "ddpg": "#1f77b4"}
LABELS = {"gddpg": "G-DDPG (diffusion actor, T = 5)", "gddpg_t1": "G-DDPG, T = 1 (ablation)", "ddpg": "DDPG (MLP actor)"}


X_AXES = {"rounds": "training rounds (environment steps)", "wall_s": "wall-clock training time (s)"}


def _svg_open(width: int, height: int, title: str, left: int, escaped: bool = True) -> list[str]:
    """An SVG document's opening: a white canvas and the title at ``left``."""
    return [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" '
            f'font-size="12"><rect width="100%" height="100%" fill="white"/>',
            f'<text x="{left}" y="22" font-size="14">{escape(title) if escaped else title}</text>']


def _frame(left: int, top: int, pw: int, ph: int) -> str:
    return f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="none" stroke="#444"/>'


def read_curve(path: Path, x: str = "rounds") -> tuple[np.ndarray, np.ndarray]:
    with Path(path).open() as f:
        rows = list(csv.DictReader(f))
    if not rows:
        raise ValueError(f"{path} has no rows")
    if x not in rows[0]:
        raise ValueError(f"{path} has no {x!r} column")
    return np.array([float(r[x]) for r in rows]), np.array([float(r["reward"]) for r in rows])


def curves_by_algo(policy_dir: Path, x: str = "rounds") -> dict[str, list[tuple[np.ndarray, np.ndarray]]]:
    out = {}
    for algo in COLOURS:
        found = sorted(Path(policy_dir, algo).glob("seed*/curve.csv"))
        if found:
            out[algo] = [read_curve(f, x) for f in found]
    return out


def learning_curve_svg(curves: dict[str, list[tuple[np.ndarray, np.ndarray]]], references: dict[str, float],
                       title: str, width: int = 760, height: int = 440, x: str = "rounds") -> str:
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

    el = _svg_open(width, height, title, left) + [_frame(left, top, pw, ph)]
    for i in range(6):
        yv = y0 + (y1 - y0) * i / 5
        xv = x0 + (x1 - x0) * i / 5
        el.append(f'<line x1="{left}" x2="{left + pw}" y1="{py(yv):.1f}" y2="{py(yv):.1f}" stroke="#eee"/>')
        el.append(f'<text x="{left - 6}" y="{py(yv) + 4:.1f}" text-anchor="end">{yv:.1f}</text>')
        tick = f"{xv / 1000:.0f}k" if x == "rounds" else f"{xv:.0f}"
        el.append(f'<text x="{px(xv):.1f}" y="{top + ph + 16}" text-anchor="middle">{tick}</text>')
    el.append(f'<text x="{left + pw / 2}" y="{height - 10}" text-anchor="middle">{escape(X_AXES.get(x, x))}</text>')
    el.append(f'<text x="16" y="{top + ph / 2}" transform="rotate(-90 16 {top + ph / 2})" text-anchor="middle">'
              'validation reward (total QoE - price x energy)</text>')
    legend_y = top + ph - 130  # legend in the lower right, clear of the reference labels
    for name, value in references.items():
        el.append(f'<line x1="{left}" x2="{left + pw}" y1="{py(value):.1f}" y2="{py(value):.1f}" stroke="#555" '
                  'stroke-dasharray="5,4"/>')
        el.append(f'<text x="{left + pw + 6}" y="{py(value) + 4:.1f}" fill="#555">{escape(name)} {value:.2f}</text>')
    for algo, runs in curves.items():
        n = min(len(xx) for xx, _ in runs)
        xs_run = np.stack([r[0][:n] for r in runs]).mean(0)  # wall-clock differs per seed: the seeds' mean
        y = np.stack([r[1][:n] for r in runs])
        lo, hi, mean = y.min(0), y.max(0), y.mean(0)
        c = COLOURS.get(algo, "#333")
        band = " ".join(f"{px(a):.1f},{py(b):.1f}" for a, b in zip(xs_run, hi))
        band += " " + " ".join(f"{px(a):.1f},{py(b):.1f}" for a, b in zip(xs_run[::-1], lo[::-1]))
        el.append(f'<polygon points="{band}" fill="{c}" fill-opacity="0.18" stroke="none"/>')
        line = " ".join(f"{px(a):.1f},{py(b):.1f}" for a, b in zip(xs_run, mean))
        el.append(f'<polyline points="{line}" fill="none" stroke="{c}" stroke-width="2"/>')
        el.append(f'<rect x="{left + pw + 8}" y="{legend_y + 60}" width="12" height="12" fill="{c}"/>')
        el.append(f'<text x="{left + pw + 24}" y="{legend_y + 70}">{escape(LABELS.get(algo, algo))}</text>')
        el.append(f'<text x="{left + pw + 24}" y="{legend_y + 84}" fill="#555">{len(runs)} seeds: mean, range</text>')
        legend_y += 40
    el.append("</svg>")
    return "\n".join(el)


# ----------------------------------------------------------------------------- system-model figures

METHOD_COLOURS = {"no_sharing": "#7f7f7f", "equal": "#bcbd22", "greedy": "#2ca02c", "best_found": "#000000",
                  "gddpg": "#d62728", "ddpg": "#1f77b4", "all on the server": "#9467bd"}
FIGURE_BEST_KW = {"population": 64, "iterations": 8, "restarts": 1}  # a lighter best found for the sweeps


def line_chart_svg(xs: list[float], series: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]], title: str,
                   xlabel: str, ylabel: str, log_x: bool = False, width: int = 640, height: int = 400) -> str:
    """SVG text: one line per series (mean) with a shaded band (lo, hi), markers at ``xs``."""
    if not series:
        raise ValueError("nothing to draw")
    left, right, top, bottom = 70, 170, 40, 50
    pw, ph = width - left - right, height - top - bottom
    fx = (lambda v: np.log2(v)) if log_x else (lambda v: v)
    x0, x1 = fx(min(xs)), fx(max(xs))
    ys = np.concatenate([np.concatenate([lo, hi]) for _, lo, hi in series.values()])
    y0, y1 = float(np.nanmin(ys)), float(np.nanmax(ys))
    pad = 0.06 * (y1 - y0 or 1.0)
    y0, y1 = y0 - pad, y1 + pad

    def px(x):
        return left + pw * (fx(x) - x0) / (x1 - x0 or 1.0)

    def py(y):
        return top + ph * (1 - (y - y0) / (y1 - y0))

    el = _svg_open(width, height, title, left) + [_frame(left, top, pw, ph)]
    for i in range(6):
        yv = y0 + (y1 - y0) * i / 5
        el.append(f'<line x1="{left}" x2="{left + pw}" y1="{py(yv):.1f}" y2="{py(yv):.1f}" stroke="#eee"/>')
        el.append(f'<text x="{left - 6}" y="{py(yv) + 4:.1f}" text-anchor="end">{yv:.1f}</text>')
    for xv in xs:
        el.append(f'<text x="{px(xv):.1f}" y="{top + ph + 16}" text-anchor="middle">{xv:g}</text>')
    el.append(f'<text x="{left + pw / 2}" y="{height - 10}" text-anchor="middle">{escape(xlabel)}</text>')
    el.append(f'<text x="16" y="{top + ph / 2}" transform="rotate(-90 16 {top + ph / 2})" text-anchor="middle">'
              f'{escape(ylabel)}</text>')
    ly = top + 10
    for name, (mean, lo, hi) in series.items():
        c = METHOD_COLOURS.get(name, "#333")
        band = " ".join(f"{px(a):.1f},{py(b):.1f}" for a, b in zip(xs, hi))
        band += " " + " ".join(f"{px(a):.1f},{py(b):.1f}" for a, b in zip(xs[::-1], lo[::-1]))
        el.append(f'<polygon points="{band}" fill="{c}" fill-opacity="0.15" stroke="none"/>')
        el.append(f'<polyline points="{" ".join(f"{px(a):.1f},{py(b):.1f}" for a, b in zip(xs, mean))}" fill="none" '
                  f'stroke="{c}" stroke-width="2"/>')
        el += [f'<circle cx="{px(a):.1f}" cy="{py(b):.1f}" r="2.5" fill="{c}"/>' for a, b in zip(xs, mean)]
        el.append(f'<rect x="{left + pw + 10}" y="{ly}" width="12" height="12" fill="{c}"/>')
        el.append(f'<text x="{left + pw + 26}" y="{ly + 10}">{escape(name)}</text>')
        ly += 20
    el.append("</svg>")
    return "\n".join(el)


def _sweep(values, make_params, policy_dir: Path, n_states: int, k_range=None, log=print) -> dict:
    """Total QoE per method at each value: mean over rounds, band = 95% t interval over rounds (baselines) or
    the range of the seeds' means (learned methods)."""
    from rlli.network.allocation import evaluate, server_reference
    from rlli.policy.baselines import BASELINES
    from rlli.policy.evaluate import heldout_states, learned_actions, seed_folders, t_ci

    names = ("no_sharing", "equal", "greedy", "best_found", "gddpg", "ddpg")
    rows = {n: ([], [], []) for n in (*names, "all on the server")}
    for v in values:
        p = make_params(v)
        st = heldout_states(p, n_states, k_range=k_range(v) if k_range else None)
        for n in names:
            if n in ("gddpg", "ddpg"):
                folders = seed_folders(policy_dir, n)
                if not folders:
                    continue
                per_seed = [evaluate(st, learned_actions(f, st, p), p).total_qoe.mean() for f in folders]
                m, lo, hi = float(np.mean(per_seed)), float(np.min(per_seed)), float(np.max(per_seed))
            else:
                kw = FIGURE_BEST_KW if n == "best_found" else {}
                q = evaluate(st, BASELINES[n](st, p, np.random.default_rng(0), **kw), p).total_qoe
                m, (lo, hi) = float(q.mean()), t_ci(q)
            for lst, x in zip(rows[n], (m, lo, hi)):
                lst.append(x)
        q = server_reference(st, p).total_qoe
        for lst, x in zip(rows["all on the server"], (float(q.mean()), *t_ci(q))):
            lst.append(x)
        log(f"  {v}: done")
    return {n: tuple(np.asarray(a) for a in r) for n, r in rows.items() if r[0]}


def pareto_svg(p, n_states: int, prices=(0.0, 0.001, 0.0025, 0.005, 0.01, 0.02, 0.05), log=print) -> tuple[str, list]:
    """Energy against total QoE of best found as the energy price moves (the front), with the two no-sharing
    references as points."""
    from rlli.network.allocation import device_reference, evaluate, server_reference
    from rlli.policy.baselines import BASELINES
    from rlli.policy.evaluate import heldout_states

    st = heldout_states(p, n_states)
    pts = []
    for lam in prices:
        q = p.with_(energy_price=float(lam))
        o = evaluate(st, BASELINES["best_found"](st, q, np.random.default_rng(0), **FIGURE_BEST_KW), q)
        pts.append((float(lam), float(o.energy_j.mean()), float(o.total_qoe.mean())))
        log(f"  price {lam}: done")
    refs = [(r.name, float(r.energy_j.mean()), float(r.total_qoe.mean())) for r in (device_reference(st, p),
                                                                                    server_reference(st, p))]
    width, height, left, right, top, bottom = 640, 400, 70, 170, 40, 50
    pw, ph = width - left - right, height - top - bottom
    es = [e for _, e, _ in pts] + [e for _, e, _ in refs]
    qs = [x for _, _, x in pts] + [x for _, _, x in refs]
    e0, e1 = min(es) * 0.95, max(es) * 1.05
    q0, q1 = min(qs) - 0.5, max(qs) + 0.5

    def px(e):
        return left + pw * (e - e0) / (e1 - e0)

    def py(q):
        return top + ph * (1 - (q - q0) / (q1 - q0))

    el = _svg_open(width, height, f"Energy-QoE front over the energy price ({n_states} rounds)", left) + \
        [_frame(left, top, pw, ph)]
    for i in range(6):
        ev, qv = e0 + (e1 - e0) * i / 5, q0 + (q1 - q0) * i / 5
        el.append(f'<text x="{px(ev):.1f}" y="{top + ph + 16}" text-anchor="middle">{ev:.0f}</text>')
        el.append(f'<text x="{left - 6}" y="{py(qv) + 4:.1f}" text-anchor="end">{qv:.1f}</text>')
    el.append(f'<text x="{left + pw / 2}" y="{height - 10}" text-anchor="middle">energy per round (J)</text>')
    el.append(f'<text x="16" y="{top + ph / 2}" transform="rotate(-90 16 {top + ph / 2})" text-anchor="middle">'
              'total QoE per round</text>')
    el.append(f'<polyline points="{" ".join(f"{px(e):.1f},{py(q):.1f}" for _, e, q in pts)}" fill="none" '
              'stroke="#000" stroke-width="2"/>')
    for lam, e, q in pts:
        el.append(f'<circle cx="{px(e):.1f}" cy="{py(q):.1f}" r="3" fill="#000"/>')
        el.append(f'<text x="{px(e) + 5:.1f}" y="{py(q) - 5:.1f}" fill="#555">{lam:g}/J</text>')
    for (name, e, q), c in zip(refs, ("#7f7f7f", "#9467bd")):
        el.append(f'<rect x="{px(e) - 4:.1f}" y="{py(q) - 4:.1f}" width="8" height="8" fill="{c}"/>')
        el.append(f'<text x="{px(e) + 7:.1f}" y="{py(q) + 4:.1f}" fill="{c}">{escape(name)}</text>')
    el.append("</svg>")
    return "\n".join(el), [{"price": a, "energy_j": b, "qoe": c} for a, b, c in pts] + \
        [{"reference": a, "energy_j": b, "qoe": c} for a, b, c in refs]


def write_system_figures(out_dir: Path, p, policy_dir: Path, n_states: int = 200, log=print) -> list[Path]:
    """docs/figures/system_qoe_vs_{users,bandwidth,server}.svg, system_pareto_energy_price.svg,
    system_personas_one_round.svg and system_figures.json (every plotted number)."""
    import json

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    data, written = {"states": n_states, "best_found": FIGURE_BEST_KW, "params": p.as_dict()}, []
    sweeps = [
        ("users", [2, 3, 4, 5, 6, 7, 8], lambda v: p, lambda v: (v, v), "users in the round", False),
        ("bandwidth", [0.05, 0.1, 0.25, 0.5, 1.0, 2.0], lambda v: p.with_(bandwidth_hz=v * 1e6), None, "band (MHz)", True),
        ("server", [1, 2.5, 5, 10, 20, 40], lambda v: p.with_(server_hz=v * 1e9), None,
         "server speed (GHz-equivalent; 20 = one A10)", True),
    ]
    for name, values, make, kr, xlabel, logx in sweeps:
        log(f"sweep {name}")
        series = _sweep(values, make, policy_dir, n_states, kr, log)
        f = out_dir / f"system_qoe_vs_{name}.svg"
        f.write_text(line_chart_svg(values, series, f"Total QoE per round against {name} ({n_states} rounds per point)",
                                    xlabel, "total QoE per round", log_x=logx))
        data[name] = {"x": values, **{k: {"mean": v[0].tolist(), "lo": v[1].tolist(), "hi": v[2].tolist()}
                                      for k, v in series.items()}}
        written.append(f)
    log("pareto")
    svg, pts = pareto_svg(p, n_states, log=log)
    f = out_dir / "system_pareto_energy_price.svg"
    f.write_text(svg)
    data["pareto"] = pts
    written.append(f)
    log("personas")
    svg, table = persona_table_svg(p, policy_dir)
    f = out_dir / "system_personas_one_round.svg"
    f.write_text(svg)
    data["personas_one_round"] = table
    written.append(f)
    j = out_dir / "system_figures.json"
    j.write_text(json.dumps(data, indent=1))
    written.append(j)
    return written


def persona_table_svg(p, policy_dir: Path, seed: int = 3) -> tuple[str, dict]:
    """One held-out round of K_max users: each user's Big-Five beside the shared steps, bandwidth share, delay and
    QoE that G-DDPG (seed 0; greedy when it has no checkpoint), greedy and best found give it."""
    from rlli.network.allocation import evaluate
    from rlli.policy.baselines import BASELINES
    from rlli.policy.evaluate import heldout_states, learned_actions, seed_folders

    st = heldout_states(p, 1, seed=seed, k_range=(p.k_max, p.k_max))
    acts = {}
    folders = seed_folders(policy_dir, "gddpg")
    if folders:
        acts["gddpg"] = learned_actions(folders[0], st, p)
    acts["greedy"] = BASELINES["greedy"](st, p)
    acts["best_found"] = BASELINES["best_found"](st, p, np.random.default_rng(0))
    outs = {k: evaluate(st, a, p) for k, a in acts.items()}
    users = np.flatnonzero(st.mask[0])
    rows = []
    for u in users:
        row = {"user": int(u), "traits": [round(float(t), 2) for t in st.traits[0, u]], "group": int(st.group[0, u]),
               "anchor": bool(st.is_anchor[0, u]), "cap": int(st.max_shared[0, u])}
        for k, o in outs.items():
            row[k] = {"steps": int(o.allocation.steps[0, u]), "bandwidth": round(float(o.allocation.bandwidth_share[0, u]), 3),
                      "delay_s": round(float(o.delay_s[0, u]), 2), "qoe": round(float(o.qoe[0, u]), 2)}
        rows.append(row)
    cols = ["user", "O C E A N", "group", "cap"] + [f"{k}: steps / band / delay / QoE" for k in outs]
    widths = [40, 150, 50, 40] + [200] * len(outs)
    width, lh = sum(widths) + 20, 20
    height = 60 + lh * (len(rows) + 1)
    el = _svg_open(width, height, f"One round of {len(rows)} users: personality beside each method's allocation "
                                  "(anchors marked *)", 10, escaped=False)
    xs = np.cumsum([10] + widths[:-1])
    for x, c in zip(xs, cols):
        el.append(f'<text x="{x}" y="50" font-weight="bold">{escape(c)}</text>')
    for i, r in enumerate(rows):
        y = 50 + lh * (i + 1)
        cells = [f"{r['user']}{'*' if r['anchor'] else ''}", " ".join(f"{t:.2f}" for t in r["traits"]), str(r["group"]),
                 str(r["cap"])] + [f"{r[k]['steps']:2d} / {r[k]['bandwidth']:.2f} / {r[k]['delay_s']:5.1f} s / {r[k]['qoe']:.1f}"
                                   for k in outs]
        for x, c in zip(xs, cells):
            el.append(f'<text x="{x}" y="{y}">{escape(c)}</text>')
    el.append("</svg>")
    return "\n".join(el), {"seed": seed, "users": rows,
                           "total_qoe": {k: round(float(o.total_qoe[0]), 3) for k, o in outs.items()}}
