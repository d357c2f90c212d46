"""Timelines of tagged files as pictures: ``musetag plot RESULTS.jsonl --out DIR``.

Reads the per-window scores that ``musetag tag --segments`` writes (``segments``: one
``{"start", "end", "scores"}`` per window, see :mod:`musetag.tag.writers`) and draws, per track,
the top tags' probability over time (rows of a regression package, ``"task": "regression"``: the
targets' predicted values on their own axis) (matplotlib, Agg backend: no display needed) into
``DIR/NNN-name.png``, plus ``DIR/index.html`` listing every track with its picture and its
whole-file top tags. The page uses no external resources (works offline).
"""
from __future__ import annotations

import html
import os
import re
from pathlib import Path
from typing import Any

import numpy as np

from musetag.errors import ConfigError

#: line colours (colour-blind friendly, Okabe & Ito), shared with the web page's timeline
COLOURS = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#D55E00", "#56B4E9", "#F0E442", "#000000")


def read_timelines(path: str | os.PathLike) -> tuple[list[str], list[dict[str, Any]]]:
    """``(tags, rows)`` of a ``.jsonl`` / ``.json`` results file; the tags in vocabulary order."""
    from musetag.tag.writers import output_format, read_results

    path = Path(path)
    if path.is_dir():
        hint = ("; a training run's plots come from `musetag report RUN`" if (path / "predictions").is_dir()
                or (path / "config.toml").is_file() else "")
        raise ConfigError(f"{path} is a folder; `musetag plot` draws a tag results file with per-window scores "
                          f"(musetag tag --segments --out tags.jsonl FILES){hint}")
    if not path.is_file():
        raise ConfigError(f"{path}: no such results file; tag first: musetag tag --segments --out {path.name} FILES")
    if output_format(path) == ".csv":
        raise ConfigError(
            f"{path}: a CSV results file has no per-window scores; tag again with "
            f"`musetag tag --segments --out {path.with_suffix('.jsonl').name} ...`"
        )
    rows = read_results(path)
    tags: list[str] = []
    if output_format(path) == ".json":
        import json

        tags = list(json.loads(path.read_text(encoding="utf-8")).get("tags") or [])
    if not tags:
        tags = next((list(r["scores"]) for r in rows if r.get("scores")), [])
    return tags, rows


def _top_tags(row: dict[str, Any], tags: list[str], top: int) -> list[int]:
    scores = row.get("scores") or {}
    order = sorted(range(len(tags)), key=lambda i: -float(scores.get(tags[i], 0.0)))
    return order[: max(1, top)]


def plot_track(row: dict[str, Any], tags: list[str], out: Path, *, top: int = 5) -> Path:
    """One track's timeline: the ``top`` tags (by whole-file score) at every window's centre."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    segs = row["segments"]
    start = np.array([s["start"] for s in segs], dtype=float)
    end = np.array([s["end"] for s in segs], dtype=float)
    scores = np.array([s["scores"] for s in segs], dtype=float).reshape(len(segs), -1)
    if scores.shape[1] != len(tags):
        raise ConfigError(f"{row.get('path')}: {scores.shape[1]} scores per window for {len(tags)} tags")
    centre = (start + end) / 2
    duration = float(row.get("duration") or end.max())
    regression = row.get("task") == "regression"
    fig = Figure(figsize=(9, 2.8), dpi=100)
    ax = fig.subplots()
    drawn = list(range(len(tags)))[:top] if regression else _top_tags(row, tags, top)
    for k, i in enumerate(drawn):
        colour = COLOURS[k % len(COLOURS)]
        if len(segs) == 1:
            ax.plot([start[0], end[0]], [scores[0, i]] * 2, color=colour, label=tags[i], linewidth=2)
        else:
            ax.plot(centre, scores[:, i], color=colour, label=tags[i], linewidth=1.8, marker="." if len(segs) < 40 else None)
    if regression:  # values on their own scale: the drawn targets' range with a margin
        low, high = float(scores[:, drawn].min()), float(scores[:, drawn].max())
        pad = max(0.05 * (high - low), 1e-3)
        ax.set(xlim=(0, duration), ylim=(low - pad, high + pad), xlabel="time (s)", ylabel="predicted value")
    else:
        ax.set(xlim=(0, duration), ylim=(0, 1), xlabel="time (s)", ylabel="probability")
    ax.set_title(Path(str(row.get("path", ""))).name, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8, frameon=False)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    return out


def _slug(path: str) -> str:
    stem = Path(path).stem or "track"
    return re.sub(r"[^A-Za-z0-9._-]+", "_", stem)[:60].strip("._") or "track"


def write_timelines(results: str | os.PathLike, out_dir: str | os.PathLike, *, top: int = 5) -> tuple[Path, int]:
    """A PNG per tagged track with per-window scores and ``index.html``: ``(index path, pictures)``.

    Raises :class:`ConfigError` when no row has per-window scores (tagged without ``--segments``)."""
    if top < 1:
        raise ConfigError(f"--top must be at least 1, got {top}")
    tags, rows = read_timelines(results)
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise ConfigError(f"--out {out_dir} is a file; give a folder for the pictures and index.html")
    with_segments = [r for r in rows if r.get("status") == "ok" and r.get("segments")]
    if not with_segments:
        raise ConfigError(
            f"{results}: no row has per-window scores ({len(rows)} rows); tag with `musetag tag --segments "
            f"--out {Path(results).name} ...` first"
        )
    items = []
    for n, row in enumerate(rows, 1):
        name = str(row.get("path", ""))
        entry = {"path": name, "status": row.get("status"), "png": None, "row": row}
        if row.get("status") == "ok" and row.get("segments"):
            # each row names its own tags (its scores, in vocabulary order): rows of two models' outputs joined into
            # one file are drawn each with its model's tags, not the first row's
            row_tags = list(row.get("scores") or {}) or tags
            png = plot_track(row, row_tags, out_dir / f"{n:03d}-{_slug(name)}.png", top=top)
            entry["png"] = png.name
        items.append(entry)
    index = out_dir / "index.html"
    index.write_text(_index_html(results, items, tags, top), encoding="utf-8")
    return index, len(with_segments)


def _index_html(results, items: list[dict[str, Any]], tags: list[str], top: int) -> str:
    esc = html.escape
    parts = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8"><title>musetag timelines</title>',
        "<style>body{font-family:system-ui,sans-serif;max-width:980px;margin:2em auto;padding:0 1em;color:#222}"
        "figure{margin:1.5em 0;border-top:1px solid #ddd;padding-top:1em}img{max-width:100%}"
        ".muted{color:#666}.error{color:#a00}</style></head><body>",
        f"<h1>Timelines of {esc(Path(str(results)).name)}</h1>",
        f'<p class="muted">{sum(1 for i in items if i["png"])} tracks; the {top} most probable tags of each '
        "track (of a regression model: its first targets' values), scored window by window (lines join the "
        "windows' centres).</p>",
    ]
    for item in items:
        row, name = item["row"], esc(item["path"])
        if item["png"]:
            if row.get("task") == "regression":
                tops = ", ".join(f"{esc(t)} {float(v):.2f}" for t, v in list((row.get("scores") or {}).items())[:top])
            else:
                tops = ", ".join(f"{esc(t['tag'])} {float(t['score']):.2f}" for t in row.get("top_tags") or [])
            dur = row.get("duration")
            parts.append(
                f'<figure><figcaption><strong>{name}</strong> <span class="muted">'
                f"{'' if dur is None else f'{float(dur):.0f} s · '}{len(row['segments'])} windows · {tops}"
                f'</span></figcaption><img src="{esc(item["png"])}" alt="{top} top tags of {name} over time: {tops}">'
                "</figure>"
            )
        elif item["status"] != "ok":
            parts.append(f'<figure><strong>{name}</strong> <span class="error">{esc(str(item["status"]))}</span></figure>')
        else:
            parts.append(f'<figure><strong>{name}</strong> <span class="muted">no per-window scores '
                         "(tagged without --segments)</span></figure>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"
