"""A comparison for people: a terminal table, CSV, and a self-contained HTML report
(inline CSS and SVG bars with error bars; nothing fetched)."""

from __future__ import annotations

import csv
import html
import io
from typing import Any


def _cell(s: dict[str, Any] | None) -> str:
    if not s:
        return "—"
    return f"{s['mean']:.4f} [{s['ci_low']:.4f}, {s['ci_high']:.4f}]"


def print_comparison(c: dict[str, Any]) -> None:
    print(f"suite {c['suite']}")
    width = max(len(r["artifact"]) for r in c["matrix"]) + 2
    print(" " * width + "".join(f"{m:<28}" for m in c["metrics"]))
    for row in c["matrix"]:
        print(f"{row['artifact']:<{width}}" + "".join(f"{_cell(row['metrics'][m]):<28}"
                                                   for m in c["metrics"]))
    for t in c["tests"]:
        pb = t["paired_bootstrap"]
        mc = f", McNemar p={t['mcnemar']['p']:.4f}" if "mcnemar" in t else ""
        verdict = "a real difference" if t["significant"] else "not a real difference"
        print(f"{t['b']} - {t['a']} {t['metric']}: {pb['diff']:+.4f} [{pb['ci_low']:+.4f}, "
              f"{pb['ci_high']:+.4f}], bootstrap p={pb['p']:.4f}{mc}: {verdict}")
    if c["flipped"]:
        print(f"{len(c['flipped'])} items flipped:")
        for f in c["flipped"][:50]:
            print(f"  item {f['item']} ({', '.join(f['metrics'])}): {f['a']}: {f['a_output']!r}"
                  f" | {f['b']}: {f['b_output']!r}")


def comparison_csv(c: dict[str, Any]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["artifact", "run_id", "metric", "mean", "ci_low", "ci_high", "n"])
    for row in c["matrix"]:
        for m in c["metrics"]:
            s = row["metrics"][m]
            if s:
                w.writerow([row["artifact"], row["run_id"], m, s["mean"], s["ci_low"],
                            s["ci_high"], s["n"]])
    return buf.getvalue()


def _bars(c: dict[str, Any], metric: str) -> str:
    rows = [(r["artifact"], r["metrics"][metric]) for r in c["matrix"] if r["metrics"][metric]]
    top = max([max(s["ci_high"], s["mean"]) for _, s in rows] + [1e-9])
    top = 1.0 if top <= 1.0 else top
    parts = []
    for k, (name, s) in enumerate(rows):
        y = 10 + k * 28
        scale = lambda v: 160 + 300 * max(0.0, v) / top  # noqa: E731
        parts.append(f'<text x="0" y="{y + 14}">{html.escape(name[:24])}</text>'
                     f'<rect x="160" y="{y}" width="{scale(s["mean"]) - 160:.1f}" height="18" '
                     f'fill="#4a7bd0"/><line x1="{scale(s["ci_low"]):.1f}" '
                     f'x2="{scale(s["ci_high"]):.1f}" y1="{y + 9}" y2="{y + 9}" stroke="#000" '
                     f'stroke-width="2"/><text x="{scale(s["ci_high"]) + 6:.1f}" y="{y + 14}">'
                     f'{s["mean"]:.3f}</text>')
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="560" height="{20 + 28 * len(rows)}"'
            f' font-size="12">{"".join(parts)}</svg>')


def comparison_html(c: dict[str, Any]) -> str:
    e = html.escape
    head = "".join(f"<th>{e(m)}</th>" for m in c["metrics"])
    body = "".join("<tr><td>" + e(r["artifact"]) + "</td>" + "".join(
        f"<td>{e(_cell(r['metrics'][m]))}</td>" for m in c["metrics"]) + "</tr>"
        for r in c["matrix"])
    tests = "".join(
        f"<tr><td>{e(t['b'])} − {e(t['a'])}</td><td>{e(t['metric'])}</td>"
        f"<td>{t['paired_bootstrap']['diff']:+.4f}</td><td>{t['paired_bootstrap']['p']:.4f}</td>"
        f"<td>{t['mcnemar']['p']:.4f}</td>" if "mcnemar" in t else
        f"<tr><td>{e(t['b'])} − {e(t['a'])}</td><td>{e(t['metric'])}</td>"
        f"<td>{t['paired_bootstrap']['diff']:+.4f}</td><td>{t['paired_bootstrap']['p']:.4f}</td>"
        f"<td>—</td>" for t in c["tests"])
    tests = tests.replace("<tr>", "<tr>")
    flips = "".join(f"<tr><td>{f['item']}</td><td>{e(', '.join(f['metrics']))}</td>"
                    f"<td><pre>{e(f['prompt'])}</pre></td><td>{e(f['a_output'])}</td>"
                    f"<td>{e(f['b_output'])}</td></tr>" for f in c["flipped"])
    charts = "".join(f"<h3>{e(m)}</h3>{_bars(c, m)}" for m in c["metrics"])
    return f"""<!doctype html><html><head><meta charset="utf-8">
<title>Evaluation: {e(c['suite'])}</title><style>
body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:4px 8px;vertical-align:top}}pre{{white-space:pre-wrap;max-width:40em}}
</style></head><body><h1>Evaluation on {e(c['suite'])}</h1>
<p>suite sha256 {e(c['suite_sha256'])}; intervals are 95 % bootstrap intervals.</p>
<table><tr><th>artifact</th>{head}</tr>{body}</table>{charts}
<h2>Paired tests</h2><table><tr><th>difference</th><th>metric</th><th>mean</th>
<th>bootstrap p</th><th>McNemar p</th></tr>{tests}</table>
<h2>Flipped items ({len(c['flipped'])})</h2><table><tr><th>item</th><th>metrics</th><th>prompt</th>
<th>{e(c['matrix'][0]['artifact'])}</th><th>{e(c['matrix'][-1]['artifact'])}</th></tr>{flips}</table>
</body></html>
"""
