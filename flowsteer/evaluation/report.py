"""`write_report`: an evaluation's report directory, from its identity and stored episodes.

Writes ``metrics.json`` (identity, notes and `summarize`'s numbers), ``report.md``,
``report.html``, ``plots/*.png`` and one picture per frequent workflow shape
(``shapes/*.svg``). The HTML is self-contained: its CSS is inline and every plot and picture is
embedded as a ``data:`` URI, so it opens from disk with no server and no network. It is always
rewritten from the whole ``episodes.jsonl``, so a resumed run's report is the full report.
"""

from __future__ import annotations

import base64
import html
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from flowsteer.canvas.graph import GraphFormatError, WorkflowGraph
from flowsteer.canvas.picture import workflow_picture
from flowsteer.evaluation.metrics import summarize
from flowsteer.evaluation.plots import write_plots
from flowsteer.evaluation.record import EpisodeRecord
from flowsteer.operators.library import OperatorLibrary

DETAIL_COLUMNS = (  # (metrics key, column title)
    ("episodes", "episodes"),
    ("accuracy", "accuracy"),
    ("turns", "turns"),
    ("policy_tokens", "policy tokens"),
    ("backend_calls", "backend calls"),
    ("backend_tokens", "backend tokens"),
    ("finish_rate", "finish rate"),
    ("shortcut_rate", "shortcut rate"),
    ("skipped", "skipped"),
    ("errors", "errors"),
)
_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Arial,sans-serif;margin:2em;color:#222;
max-width:1200px}
table{border-collapse:collapse;margin:0.6em 0 1.4em}th,td{border:1px solid #bbb;
padding:4px 8px;text-align:right;font-size:13px}th{background:#eef1f5}
td.l,th.l{text-align:left}code{font-size:12px}img{max-width:100%;border:1px solid #ddd}
.shape{display:inline-block;vertical-align:top;margin:0 1em 1em 0;max-width:360px}
"""


def fmt(value: Any) -> str:
    """A number as the tables show it (``-`` for none)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return f"{value:.3f}" if abs(value) < 1000 else f"{value:.0f}"
    return str(value)


def _shape_pictures(
    summary: dict[str, Any],
    records: Sequence[EpisodeRecord],
    out: Path,
    library: OperatorLibrary | None,
) -> None:
    """Write shapes/<system>_<source>_<k>.svg for each top shape; its path goes into summary."""
    graphs = {}
    for r in records:
        if r.workflow_json and (r.system, r.source, r.dsl) not in graphs:
            graphs[(r.system, r.source, r.dsl)] = r.workflow_json
    folder = out / "shapes"
    for system, s in summary.items():
        for source, d in s["datasets"].items():
            for k, shape in enumerate(d["shapes"], 1):
                text = graphs.get((system, source, shape["dsl"]))
                shape["picture"] = None
                if text is None:
                    continue
                try:
                    graph = WorkflowGraph.from_json(text)
                except GraphFormatError:
                    continue
                folder.mkdir(exist_ok=True)
                name = f"{system}_{_safe(source)}_{k}.svg"
                (folder / name).write_text(
                    workflow_picture(graph, library).to_svg(), encoding="utf-8"
                )
                shape["picture"] = f"shapes/{name}"


def _safe(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in text)


def _headline_rows(summary: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    datasets = sorted({src for s in summary.values() for src in s["datasets"]})
    head = ["dataset", "metric", *summary]
    rows = []
    for d in datasets:
        metric = next(
            (s["datasets"][d]["headline"] for s in summary.values() if d in s["datasets"]), ""
        )
        rows.append(
            [d, metric, *(fmt(s["datasets"].get(d, {}).get("accuracy")) for s in summary.values())]
        )
    rows.append(["mean", "", *(fmt(s["overall"]["accuracy"]) for s in summary.values())])
    return head, rows


def _detail_rows(system: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    head = ["dataset", *(title for _, title in DETAIL_COLUMNS), "all metrics", "reward"]
    rows = []
    for source, d in system["datasets"].items():
        metrics = ", ".join(f"{m} {fmt(v)}" for m, v in d["metrics"].items()) or "-"
        rows.append(
            [source, *(fmt(d[key]) for key, _ in DETAIL_COLUMNS), metrics, fmt(d["reward"])]
        )
    return head, rows


def _md_table(head: list[str], rows: list[list[str]]) -> str:
    cell = lambda t: str(t).replace("|", "\\|").replace("\n", " ")  # noqa: E731
    lines = ["| " + " | ".join(map(cell, head)) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(map(cell, row)) + " |" for row in rows]
    return "\n".join(lines)


def _html_table(head: list[str], rows: list[list[str]]) -> str:
    th = "".join(
        f'<th class="{"l" if i == 0 else ""}">{html.escape(h)}</th>' for i, h in enumerate(head)
    )
    body = "".join(
        "<tr>"
        + "".join(
            f'<td class="{"l" if i == 0 else ""}">{html.escape(str(c))}</td>'
            for i, c in enumerate(row)
        )
        + "</tr>"
        for row in rows
    )
    return f"<table><tr>{th}</tr>{body}</table>"


def _data_uri(path: Path, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(path.read_bytes()).decode('ascii')}"


def _identity_rows(identity: dict[str, Any]) -> list[list[str]]:
    rows = []
    for key, value in identity.items():
        if key == "datasets":
            for ds in value:
                rows.append(
                    [f"dataset {ds['source']}", f"{ds['path']} ({ds['tasks']} tasks, "
                     f"limit {ds['limit']}) sha256 {ds['sha256']}"]
                )  # fmt: skip
        elif isinstance(value, dict | list):
            rows.append([key, json.dumps(value, sort_keys=True)])
        else:
            rows.append([key, str(value) if value != "" else "-"])
    return rows


def write_report(
    out_dir: str | Path,
    identity: dict[str, Any],
    records: Sequence[EpisodeRecord],
    notes: Sequence[str] = (),
    library: OperatorLibrary | None = None,
    title: str = "FlowSteer evaluation",
) -> dict[str, Any]:
    """Write the report files into ``out_dir``; returns what ``metrics.json`` holds.

    Args:
        out_dir: The report directory (holds ``episodes.jsonl``).
        identity: `RunIdentity.to_dict` of the run.
        records: Every stored episode.
        notes: Lines for the report (e.g. a baseline that was skipped, and why).
        library: The operator library (checkers for the shortcut rate, picture colours).
        title: The report's heading.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    summary = summarize(records, library)
    _shape_pictures(summary, records, out, library)
    plots = write_plots(summary, out / "plots")
    metrics = {"identity": identity, "notes": list(notes), "systems": summary}
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2, sort_keys=False) + "\n")

    head, rows = _headline_rows(summary)
    md = [f"# {title}", "", "## Accuracy per dataset", "", _md_table(head, rows), ""]
    hx = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        "<h2>Accuracy per dataset</h2>",
        _html_table(head, rows),
    ]
    if notes:
        md += ["## Notes", "", *(f"* {n}" for n in notes), ""]
        hx += ["<h2>Notes</h2><ul>", *(f"<li>{html.escape(n)}</li>" for n in notes), "</ul>"]
    md += ["## Plots", ""]
    hx.append("<h2>Plots</h2>")
    for name, path in plots.items():
        md.append(f"![{name}](plots/{path.name})")
        hx.append(f'<p><img alt="{name}" src="{_data_uri(path, "image/png")}"></p>')
    md.append("")
    for system, s in summary.items():
        head, rows = _detail_rows(s)
        md += [f"## {system}", "", _md_table(head, rows), ""]
        hx += [f"<h2>{html.escape(system)}</h2>", _html_table(head, rows)]
        for source, d in s["datasets"].items():
            if not d["shapes"]:
                continue
            md += [f"### {system}: most frequent workflows on {source}", ""]
            md += [_md_table(
                ["workflow", "episodes", "accuracy", "picture"],
                [[f"`{sh['dsl']}`", str(sh["count"]), fmt(sh["accuracy"]),
                  f"![shape]({sh['picture']})" if sh.get("picture") else "-"] for sh in d["shapes"]],
            ), ""]  # fmt: skip
            hx.append(
                f"<h3>{html.escape(system)}: most frequent workflows on {html.escape(source)}</h3>"
            )
            for sh in d["shapes"]:
                pic = ""
                if sh.get("picture"):
                    pic = f'<br><img alt="workflow" src="{_data_uri(out / sh["picture"], "image/svg+xml")}">'
                hx.append(
                    f'<div class="shape"><code>{html.escape(sh["dsl"])}</code><br>'
                    f"{sh['count']} episodes, accuracy {fmt(sh['accuracy'])}{pic}</div>"
                )
    id_rows = _identity_rows(identity)
    md += ["## Run", "", _md_table(["setting", "value"], id_rows), ""]
    hx += ["<h2>Run</h2>", _html_table(["setting", "value"], id_rows), "</body></html>"]
    (out / "report.md").write_text("\n".join(md), encoding="utf-8")
    (out / "report.html").write_text("\n".join(hx) + "\n", encoding="utf-8")
    return metrics


__all__ = ["fmt", "write_report"]
