"""Figures without a plotting library: SVG validation curves and speed/quality scatter plots, and labelled image
tiles for side-by-side comparisons."""

from __future__ import annotations

import math

import cv2
import numpy as np

COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
          "#17becf", "#000000", "#aec7e8"]
_HEAD = ('<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="11">'
         '<rect width="100%" height="100%" fill="white"/>')


def psnr_plot_svg(series: list[tuple[str, list[tuple[int, float]]]], key: str, switches: list[int] | None = None,
                  width: int = 760, height: int = 440) -> str:
    """Validation PSNR over iterations, one line per variant, as a self-contained SVG; dashed lines mark
    BN switches."""
    series = [(n, pts) for n, pts in series if pts]
    if not series:
        return ""
    xs = [x for _, pts in series for x, _ in pts]
    ys = [y for _, pts in series for _, y in pts]
    x0, x1, y0, y1 = 0, max(xs), min(ys), max(ys)
    y0, y1 = y0 - 0.05 * (y1 - y0 + 1e-6), y1 + 0.05 * (y1 - y0 + 1e-6)
    left, right, top, bottom = 60, 230, 20, 40
    def px(x: float) -> float:
        return left + (x - x0) / max(x1 - x0, 1) * (width - left - right)
    def py(y: float) -> float:
        return top + (y1 - y) / (y1 - y0) * (height - top - bottom)
    colors = COLORS
    parts = [_HEAD.format(w=width, h=height),
             f'<line x1="{left}" y1="{height - bottom}" x2="{width - right}" y2="{height - bottom}" stroke="black"/>',
             f'<line x1="{left}" y1="{top}" x2="{left}" y2="{height - bottom}" stroke="black"/>',
             f'<text x="{(width - right + left) / 2}" y="{height - 8}" text-anchor="middle">iteration</text>',
             f'<text x="14" y="{height / 2}" transform="rotate(-90 14 {height / 2})" text-anchor="middle">'
             f'{key} PSNR (dB)</text>']
    for i in range(5):
        yv = y0 + (y1 - y0) * i / 4
        parts.append(f'<text x="{left - 4}" y="{py(yv) + 4:.1f}" text-anchor="end">{yv:.2f}</text>')
        xv = x0 + (x1 - x0) * i / 4
        parts.append(f'<text x="{px(xv):.1f}" y="{height - bottom + 14}" text-anchor="middle">{xv:.0f}</text>')
    for it in sorted(set(switches or [])):
        parts.append(f'<line x1="{px(it):.1f}" y1="{top}" x2="{px(it):.1f}" y2="{height - bottom}" stroke="#888" '
                     'stroke-dasharray="4,3"/>')
        parts.append(f'<text x="{px(it) - 3:.1f}" y="{top + 10}" text-anchor="end" fill="#555">BN switch</text>')
    for k, (name, pts) in enumerate(series):
        color = colors[k % len(colors)]
        path = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in pts)
        parts.append(f'<polyline points="{path}" fill="none" stroke="{color}" stroke-width="1.5"/>')
        parts.append(f'<text x="{width - right + 8}" y="{top + 14 * k + 10}" fill="{color}">{name}</text>')
    parts.append("</svg>")
    return "\n".join(parts)




def scatter_svg(points: list[dict], x_label: str, y_label: str, width: int = 820, height: int = 520,
                log_x: bool = True) -> str:
    """One labelled point per entry (``x``, ``y``, ``label``, optional ``group`` for colour and legend and
    ``hollow`` for an open marker), log-scaled x by default: speed against quality, as the papers' Figure 1."""
    if not points:
        return ""
    fx = (lambda v: math.log10(v)) if log_x else (lambda v: v)
    xs, ys = [fx(p["x"]) for p in points], [p["y"] for p in points]
    x0, x1 = min(xs), max(xs)
    pad_x = 0.06 * (x1 - x0 or 1)
    x0, x1 = x0 - pad_x, x1 + pad_x
    y0, y1 = min(ys), max(ys)
    pad_y = 0.08 * (y1 - y0 or 1)
    y0, y1 = y0 - pad_y, y1 + pad_y
    left, right, top, bottom = 60, 200, 20, 44

    def px(v: float) -> float:
        return left + (fx(v) - x0) / (x1 - x0) * (width - left - right)

    def py(v: float) -> float:
        return top + (y1 - v) / (y1 - y0) * (height - top - bottom)

    parts = [_HEAD.format(w=width, h=height),
             f'<line x1="{left}" y1="{height - bottom}" x2="{width - right}" y2="{height - bottom}" stroke="black"/>',
             f'<line x1="{left}" y1="{top}" x2="{left}" y2="{height - bottom}" stroke="black"/>',
             f'<text x="{(width - right + left) / 2}" y="{height - 8}" text-anchor="middle">{x_label}</text>',
             f'<text x="14" y="{height / 2}" transform="rotate(-90 14 {height / 2})" text-anchor="middle">'
             f'{y_label}</text>']
    if log_x:
        ticks = [10.0**e * m for e in range(math.floor(x0) - 1, math.ceil(x1) + 1) for m in (1, 2, 5)]
        ticks = [t for t in ticks if x0 <= math.log10(t) <= x1]
    else:
        ticks = [x0 + (x1 - x0) * i / 4 for i in range(5)]
    for t in ticks:
        parts.append(f'<line x1="{px(t):.1f}" y1="{top}" x2="{px(t):.1f}" y2="{height - bottom}" stroke="#eee"/>')
        parts.append(f'<text x="{px(t):.1f}" y="{height - bottom + 14}" text-anchor="middle">{t:g}</text>')
    for i in range(6):
        yv = y0 + (y1 - y0) * i / 5
        parts.append(f'<text x="{left - 4}" y="{py(yv) + 4:.1f}" text-anchor="end">{yv:.2f}</text>')
    groups = list(dict.fromkeys(p.get("group", "") for p in points))
    for p in points:
        color = COLORS[groups.index(p.get("group", "")) % len(COLORS)]
        fill = "white" if p.get("hollow") else color
        parts.append(f'<circle cx="{px(p["x"]):.1f}" cy="{py(p["y"]):.1f}" r="4.5" fill="{fill}" stroke="{color}" '
                     'stroke-width="1.5"/>')
        parts.append(f'<text x="{px(p["x"]) + 7:.1f}" y="{py(p["y"]) - 5:.1f}" fill="{color}">{p["label"]}</text>')
    for k, group in enumerate(g for g in groups if g):
        color = COLORS[groups.index(group) % len(COLORS)]
        parts.append(f'<text x="{width - right + 10}" y="{top + 14 * k + 10}" fill="{color}">{group}</text>')
    parts.append("</svg>")
    return "\n".join(parts)


def label_tile(tile: np.ndarray, label: str) -> np.ndarray:
    """An RGB uint8 tile under a white strip with its label, so that a figure reads without its caption."""
    header = np.full((24, tile.shape[1], 3), 255, dtype=np.uint8)
    cv2.putText(header, label, (4, 17), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    return np.concatenate([header, tile], axis=0)
