"""The HTML writer: ``leaderboard.html``, one self-contained page (styles, script and images inline).

In reading order: the answer (summary figure and paragraph beside the heatmap), the overall table, then per
task (collapsed) its findings, table, curves and attention maps; each suite's score, the study, speed and
provenance last. Tables sort on a header click and filter by task and backbone; click an image to enlarge it.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterable, Sequence

from attnzoo.leaderboard.report.aggregation import PEAK_MEM_NOTE, Entry
from attnzoo.leaderboard.report.alignment import ALIGNMENT_NOTE, alignment_table
from attnzoo.leaderboard.report.analysis import Report
from attnzoo.leaderboard.report.findings import VERDICTS as VERDICT_ORDER
from attnzoo.leaderboard.report.findings import Finding
from attnzoo.leaderboard.report.plots import data_uri
from attnzoo.leaderboard.report.tables import (AT_CHANCE, IQM_NOTE, Ranking, at_chance, best_pair, counts_line, fmt,
                                               is_baseline, task_table)
from attnzoo.tasks.base import NO_ATTENTION as BASELINE

__all__ = ["html_table", "render"]

_STATUS_PREFIXES = ("n/a", "failed", "diverged", "oom")


def html_table(headers: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in headers)
    body = []
    for r in rows:
        cells = []
        for c in r:
            text = str(c)
            cls = ""
            if text.startswith(_STATUS_PREFIXES):
                cls = f' class="na {text.split(":")[0].split(" ")[0].replace("/", "")}"'
            cells.append(f"<td{cls}>{html.escape(text)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _anchors(tasks: Iterable[str]) -> dict[str, str]:
    """A unique, valid HTML id per task label (``task-associative-recall``)."""
    out: dict[str, str] = {}
    used = {"findings", "overall", "mad", "speed", "provenance", "answer", "throughput", "summary-figure",
            "heatmap-figure", "overall-table", "filter-task", "filter-backbone"}
    for t in tasks:
        base = "task-" + (re.sub(r"[^A-Za-z0-9_-]+", "-", t).strip("-") or "x")
        aid, i = base, 2
        while aid in used:
            aid, i = f"{base}-{i}", i + 1
        used.add(aid)
        out[t] = aid
    return out


def _html_findings(findings: list[Finding], *, heading: bool = True) -> list[str]:
    parts: list[str] = []
    by_task: dict[str, list[Finding]] = {}
    for f in findings:
        by_task.setdefault(f.task, []).append(f)
    for task, fs in by_task.items():
        if heading:
            parts.append(f"<h3>{html.escape(task)}</h3>")
        if fs[0].context:
            parts.append(f'<p class="note">{html.escape(fs[0].context)}</p>')
        parts.append('<ul class="findings">')
        for f in fs:
            cls = "verdict-" + f.verdict.replace(" ", "-")
            parts.append(f'<li>{html.escape(f.claim)}: <span class="{cls}">{html.escape(f.verdict_text)}</span>'
                         + "</li>")
            if f.why:
                parts.append(f'<p class="why">Why expected: {html.escape(f.why)}</p>')
        parts.append("</ul>")
    return parts


def _abbreviations(labels: Sequence[str], width: int = 8) -> dict[str, str]:
    """A short column header per task label (``associative-recall`` -> ``AR``, ``induction-heads-1l`` ->
    ``IH-1l``; labels of up to ``width`` characters stay), unique."""
    out: dict[str, str] = {}
    for lab in labels:
        short = lab
        if len(lab) > width:
            parts = [p for p in re.split(r"[-_ ]+", lab) if p]
            short = "".join(p[0].upper() for p in parts if not any(c.isdigit() for c in p))
            digits = [p for p in parts if any(c.isdigit() for c in p)]
            short += ("-" + "-".join(digits)) if digits else ""
        base, i = short, 2
        while short in out.values():
            short, i = f"{base}{i}", i + 1
        out[lab] = short
    return out


def _sort_value(text: str) -> str:
    m = re.match(r"\s*(-?\d+(?:\.\d+)?)", text)
    return m.group(1) if m else ""


def _html_overall(tasks: dict[str, list[Entry]], headers: list[str], rows: list[list[str]],
                  chosen: dict[str, dict[str, Entry]], ranks: dict[str, Ranking], anchors: dict[str, str],
                  highlight: set[str]) -> str:
    """The overall table for a 1400 px screen: abbreviated task headers (full name on hover, a key below),
    cells ``1.00 3/3`` linking to the task's findings (the full text on hover), attention variants ranked by
    IQM and the baselines in a band of their own; sortable and filterable."""
    task_names = list(tasks)
    abbr = _abbreviations(task_names)
    head = ['<th data-type="num" title="rank by IQM">#</th>', "<th>variant</th>",
            f'<th data-type="num" title="{html.escape(IQM_NOTE)}">IQM [95% CI]</th>',
            '<th data-type="num" title="tasks where its median reaches the threshold, of those it has a number on">'
            "solved</th>"]
    head += [f'<th data-type="num" data-col="{html.escape(t)}" title="{html.escape(t)}">{html.escape(abbr[t])}</th>'
             for t in task_names]
    bodies: dict[bool, list[str]] = {False: [], True: []}
    place = 0
    for r in rows:
        lab = r[0]
        if r[1] == "":  # chance / threshold rows: the foot
            continue
        base = is_baseline(lab)
        rk = ranks.get(lab)
        if not base:
            place += 1
        rank_text = ("at chance" if rk is not None and rk.iqm is not None and rk.iqm.hi < AT_CHANCE
                     else ("" if base else str(place)))
        mine = lab in highlight or lab.split(" (")[0] in highlight
        backbones = sorted({e.backbone_name or e.backbone for es in tasks.values() for e in es if e.label == lab})
        cls = " ".join(c for c in ("baseline" if base else "", "mine" if mine else "") if c)
        cells = [f'<td data-sort="{place if not base else ""}">{html.escape(rank_text)}</td>',
                 f"<td>{html.escape(lab)}</td>",
                 f'<td data-sort="{rk.iqm.value if rk is not None and rk.iqm is not None else ""}">'
                 f"{html.escape(r[1])}</td>",
                 f'<td data-sort="{_sort_value(r[2])}">{html.escape(r[2].replace(" of ", "/"))}</td>']
        for t, full in zip(task_names, r[3:]):
            e = chosen.get(lab, {}).get(t)
            link = f'href="#{anchors[t]}"'
            if e is not None:
                at = at_chance(e)
                short = f"{e.median:.2f} {e.solved}/{e.n_seeds}"
                tip = full + (" — at chance" if at else "")
                cells.append(f'<td data-col="{html.escape(t)}" data-sort="{e.median}" class="{"chance" if at else ""}"'
                             f' title="{html.escape(tip)}"><a {link}>{html.escape(short)}</a></td>')
            elif full == "–":
                cells.append(f'<td data-col="{html.escape(t)}" data-sort="">–</td>')
            else:
                short = full.split(":")[0].split(" (")[0]
                cells.append(f'<td data-col="{html.escape(t)}" data-sort="" class="na" title="{html.escape(full)}">'
                             f"<a {link}>{html.escape(short)}</a></td>")
        bodies[base].append(f'<tr class="{cls}" data-backbones="{html.escape(" ".join(backbones))}">'
                            + "".join(cells) + "</tr>")
    foot = []
    for r in rows:
        if r[1] == "":
            foot.append(f'<tr><td></td><td>{html.escape(r[0])}</td><td></td><td></td>'
                        + "".join(f'<td data-col="{html.escape(t)}">{html.escape(c)}</td>'
                                  for t, c in zip(task_names, r[3:])) + "</tr>")
    n_cols = len(head)
    band = (f'<tbody class="band"><tr class="separator"><td colspan="{n_cols}">baselines without attention'
            "</td></tr></tbody>") if bodies[True] else ""
    key = "; ".join(f"<b>{html.escape(abbr[t])}</b> {html.escape(t)}" for t in task_names if abbr[t] != t)
    return (f'<table id="overall-table" class="sortable overall"><thead><tr>{"".join(head)}</tr></thead>'
            f'<tbody>{"".join(bodies[False])}</tbody>{band}<tbody class="baselines">{"".join(bodies[True])}</tbody>'
            f'<tfoot>{"".join(foot)}</tfoot></table>'
            + (f'<p class="note key">Columns: {key}.</p>' if key else ""))


def _html_task_table(entries: list[Entry], highlight: set[str]) -> str:
    """One task's table: sortable, each row tagged with its backbone (for the filter), baselines in a grey
    band, the highlighted variants marked."""
    headers, trows = task_table(entries)
    head = "".join(f'<th data-type="{"num" if i in (0, 3) else "text"}">{html.escape(h)}</th>'
                   for i, h in enumerate(headers))
    body = []
    for e, r in zip(entries, trows):
        cls = " ".join(c for c in ("baseline" if e.variant == BASELINE else "",
                                   "mine" if e.variant in highlight else "") if c)
        cells = []
        for i, c in enumerate(r):
            text = str(c)
            sort = f' data-sort="{_sort_value(text)}"' if i in (0, 3) else ""
            na = (f' class="na {text.split(":")[0].split(" ")[0].replace("/", "")}"'
                  if text.startswith(_STATUS_PREFIXES) else "")
            cells.append(f"<td{sort}{na}>{html.escape(text)}</td>")
        body.append(f'<tr class="{cls}" data-backbones="{html.escape(e.backbone_name or e.backbone)}">'
                    + "".join(cells) + "</tr>")
    return f'<table class="sortable"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'



_JS = """
(function(){
function val(td,type){var s=td.getAttribute('data-sort');if(s===null)s=td.textContent.trim();
 if(type==='num'){var f=parseFloat(s);return isNaN(f)?null:f;}return s.toLowerCase();}
document.querySelectorAll('table.sortable').forEach(function(table){
 table.querySelectorAll('thead th').forEach(function(th,col){
  th.classList.add('sort');th.tabIndex=0;
  function go(){var type=th.getAttribute('data-type')||'text';
   var dir=th.getAttribute('aria-sort')==='ascending'?-1:1;
   table.querySelectorAll('thead th').forEach(function(o){o.removeAttribute('aria-sort');});
   th.setAttribute('aria-sort',dir===1?'ascending':'descending');
   table.querySelectorAll('tbody').forEach(function(tb){
    var rows=Array.prototype.slice.call(tb.rows).filter(function(r){return !r.classList.contains('separator');});
    rows.sort(function(a,b){var x=val(a.cells[col],type),y=val(b.cells[col],type);
     if(x===null&&y===null)return 0;if(x===null)return 1;if(y===null)return -1;
     return (x<y?-1:x>y?1:0)*dir;});
    rows.forEach(function(r){tb.appendChild(r);});});}
  th.addEventListener('click',go);
  th.addEventListener('keydown',function(ev){if(ev.key==='Enter')go();});});});
var ft=document.getElementById('filter-task'),fb=document.getElementById('filter-backbone');
function filter(){var t=ft?ft.value:'',b=fb?fb.value:'';
 document.querySelectorAll('[data-col]').forEach(function(c){c.classList.toggle('hidden',!!t&&c.getAttribute('data-col')!==t);});
 document.querySelectorAll('details.task').forEach(function(d){d.classList.toggle('hidden',!!t&&d.getAttribute('data-task')!==t);
  if(t&&d.getAttribute('data-task')===t)d.open=true;});
 document.querySelectorAll('tr[data-backbones]').forEach(function(r){
  r.classList.toggle('hidden',!!b&&r.getAttribute('data-backbones').split(' ').indexOf(b)<0);});}
if(ft)ft.addEventListener('change',filter);if(fb)fb.addEventListener('change',filter);
function openHash(){var id=location.hash.slice(1);if(!id)return;var el=document.getElementById(id);
 if(el&&el.tagName==='DETAILS'){el.open=true;el.scrollIntoView();}}
window.addEventListener('hashchange',openHash);openHash();
})();
"""

_CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;margin:.8em auto;max-width:1380px;
padding:0 10px;color:#222}
h1{font-size:1.4em;margin:.2em 0}h2{margin-top:1.6em;border-bottom:1px solid #ddd}h3{margin-top:1.2em}
p.counts{margin:.1em 0 .5em;color:#444;font-size:14px}
nav.toc{font-size:13px;margin:.2em 0 .6em}nav.toc a{margin-right:.8em}
.lead{display:grid;grid-template-columns:minmax(0,5fr) minmax(0,7fr);gap:14px;align-items:start}
.lead figure{margin:0}.lead img{max-height:60vh;width:auto;max-width:100%;display:block}
p.summary{font-size:14px;line-height:1.4;margin:.4em 0}
table{border-collapse:collapse;font-size:13px;margin:1em 0}
th,td{border:1px solid #ccc;padding:3px 6px;text-align:left;white-space:nowrap}
th{background:#f3f3f3}th.sort{cursor:pointer}th[aria-sort=ascending]::after{content:' \\25B2'}
th[aria-sort=descending]::after{content:' \\25BC'}
table.overall td,table.overall th{padding:3px 5px;font-size:12.5px}
table.overall td a{color:inherit;text-decoration:none}table.overall td a:hover{text-decoration:underline}
tr.baseline td{background:#eeeeee;color:#444}tbody.baselines td:nth-child(2){font-style:italic}
tr.separator td{background:#555;color:#fff;font-size:11px;padding:1px 6px;letter-spacing:.04em}
tr.mine td{background:#fff3b0 !important;font-weight:600}
td.chance{color:#999}
td.na{color:#888;font-style:italic;white-space:normal;max-width:28em}
td.diverged,td.oom,td.failed{color:#a33}
table.overall td.na{white-space:nowrap}
details table{display:block;overflow-x:auto;max-width:100%}
tfoot td{color:#666;font-size:12px;background:#fafafa}
.hidden{display:none !important}
.filters{font-size:13px;margin:.6em 0;display:flex;gap:1.2em;align-items:center}
img{max-width:100%;border:1px solid #eee;margin:.5em 0}
img.zoom{cursor:zoom-in}
img.zoom:focus{position:fixed;inset:0;margin:0;width:100vw;height:100vh;max-width:none;max-height:none;
object-fit:contain;background:rgba(255,255,255,.97);z-index:10;cursor:zoom-out;outline:none}
p.note{font-size:12px;color:#555}
details.task{border:1px solid #ddd;border-radius:4px;margin:.4em 0;padding:.2em .8em}
details.task>summary{cursor:pointer;font-weight:600;font-size:15px;padding:.3em 0}
details.task>summary span{font-weight:400;font-size:13px;color:#555;margin-left:.6em}
ul.findings li{margin:.35em 0}
.verdict-supported{color:#176b1f;font-weight:600}.verdict-not-supported{color:#a33;font-weight:600}
.verdict-missing,.verdict-unknown{color:#8a6d00;font-weight:600}
p.why{font-size:12px;color:#666;margin:.1em 0 .4em 1.5em}
dl{display:grid;grid-template-columns:max-content auto;gap:2px 12px;font-size:13px}dt{font-weight:600}
"""

def _img(report: Report, key: str, alt: str, id_: str = "") -> str:
    """An inline ``<img>`` of figure ``key`` (click to enlarge), or ``""`` when the report has no such figure."""
    if key not in report.figures:
        return ""
    ident = f' id="{id_}"' if id_ else ""
    return (f'<img{ident} class="zoom" tabindex="0" title="click to enlarge" alt="{html.escape(alt)}" '
            f'src="{data_uri(report.figures[key])}">')


def _head(report: Report) -> list[str]:
    """The document head, the counts line, the contents and the answer (summary figure, lead, heatmap)."""
    toc = [("answer", "Answer"), ("overall", "Overall"), ("findings", "Findings by task")]
    toc += [(t.anchor, t.title) for t in report.suites]
    toc += [("speed", "Speed")] if "speed" in report.figures else []
    toc += [("provenance", "Provenance")]
    mine = sorted(report.highlight)
    return ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
            '<meta name="viewport" content="width=device-width, initial-scale=1">',
            "<title>attnzoo leaderboard</title>", f"<style>{_CSS}</style></head><body>",
            "<h1>attnzoo leaderboard</h1>",
            f'<p class="counts">{html.escape(counts_line(report.tasks))}; preset '
            f'{html.escape(dict(report.provenance).get("preset", "–"))}'
            + (f"; highlighted: <b>{html.escape(', '.join(mine))}</b> (from --against)" if mine else "") + "</p>",
            '<nav class="toc">' + "".join(f'<a href="#{a}">{html.escape(t)}</a>' for a, t in toc) + "</nav>",
            '<section id="answer" class="lead"><div>',
            _img(report, "summary", "best attention variant vs best baseline without attention, per task, chance marked",
                 "summary-figure"),
            f'<p class="summary">{html.escape(report.lead)}</p></div>',
            f'<figure>{_img(report, "heatmap", "median per variant and task", "heatmap-figure")}</figure></section>']


def _overall_section(report: Report, anchors: dict[str, str]) -> list[str]:
    """The filters, the overall table and the performance profiles."""
    tasks = report.tasks
    o_headers, o_rows, chosen = report.overall
    backbones = sorted({e.backbone_name or e.backbone for es in tasks.values() for e in es})
    return ['<div class="filters"><label>task <select id="filter-task"><option value="">all</option>'
            + "".join(f'<option value="{html.escape(t)}">{html.escape(t)}</option>' for t in tasks)
            + '</select></label><label>backbone <select id="filter-backbone"><option value="">all</option>'
            + "".join(f'<option value="{html.escape(b)}">{html.escape(b)}</option>' for b in backbones)
            + "</select></label><span class=\"note\">click a column header to sort</span></div>",
            '<h2 id="overall">Overall</h2>',
            "<p>Each cell: the variant's best backbone on the label (main test metric at the learning rate best on "
            "validation): median over seeds and seeds solved; hover for the spread, steps to solve and backbone; "
            "click for the task's findings. Grey: at chance. IQM: " + html.escape(IQM_NOTE) + "</p>",
            _html_overall(tasks, o_headers, o_rows, chosen, report.ranks, anchors, report.highlight),
            _img(report, "profile", "performance profiles")]


def _task_section(report: Report, task: str, entries: list[Entry], anchor: str, findings: list[Finding]) -> list[str]:
    """One task, collapsed: its verdicts and best pair in the summary line, then findings, table and figures."""
    verdicts = ", ".join(f"{n} {v}" for v in VERDICT_ORDER if (n := sum(f.verdict == v for f in findings)))
    att, base = best_pair(entries)
    head = (f"best attention {att.median:.2f} ({att.variant})" if att else "no attention result")
    head += f", best baseline {base.median:.2f}" if base else ""
    chance = next((e.chance for e in entries if e.chance is not None), None)
    parts = [f'<details class="task" id="{anchor}" data-task="{html.escape(task)}">',
             f"<summary>{html.escape(task)}<span>{html.escape(head)}; chance {fmt(chance)}"
             + (f"; claims: {html.escape(verdicts)}" if verdicts else "") + "</span></summary>"]
    parts += _html_findings(findings, heading=False)
    parts += [f"<p>Chance level: {fmt(chance)}. Solved: a seed at ≥ {entries[0].threshold:g}. Steps to solve: "
              "the first validation step at that level, median over seeds (&gt;N: not within the budget).</p>",
              _html_task_table(entries, report.highlight)]
    if any(e.peak_mem_hidden for e in entries):
        parts.append(f'<p class="note">{html.escape(PEAK_MEM_NOTE)}</p>')
    parts.append(_img(report, f"curves:{task}", f"learning curves, {task}"))
    table = alignment_table(entries)
    if table is not None:
        parts += [f"<h3>{html.escape(task)}: alignment</h3>", html_table(*table),
                  f'<p class="note">{html.escape(ALIGNMENT_NOTE)}</p>']
    return parts + [_img(report, f"attention:{task}", f"attention maps, {task}"), "</details>"]


def _findings_section(report: Report, anchors: dict[str, str]) -> list[str]:
    parts = ['<h2 id="findings">Findings by task</h2>',
             '<p class="note">Each task\'s claims (the contrasts it exists to show), checked against these results; a '
             "claim the data do not support is shown as not supported, with its numbers. The same text is in "
             "findings.md. Click a task to open it.</p>"]
    by_task: dict[str, list[Finding]] = {}
    for f in report.findings:
        by_task.setdefault(f.task, []).append(f)
    for task, entries in report.tasks.items():
        parts += _task_section(report, task, entries, anchors[task], by_task.get(task, []))
    return parts


def _tail(report: Report) -> list[str]:
    """Accuracy vs throughput, each suite's score, the inductive-bias study, speed and provenance."""
    parts = ["<h2 id=\"throughput\">Accuracy vs throughput</h2>", _img(report, "acc_vs_speed", "accuracy vs throughput")]
    for t in report.suites:
        parts += [f'<h2 id="{t.anchor}">{html.escape(t.title)}</h2>', f"<p>{html.escape(t.intro)}</p>",
                  html_table(t.headers, t.rows)]
        parts += [f'<p class="note">{html.escape(n)}</p>' for n in t.notes]
    study_keys = [k for k in report.figures if k.startswith("study:")]
    if study_keys:  # the inductive-bias study (attnzoo.leaderboard.report.study): its figures, then its findings
        study_findings = [x[2:] for x in report.study_md if x.startswith("- ")]
        parts += ['<h2 id="study">How far can a network without attention go?</h2>']
        parts += [_img(report, k, k.split(":", 1)[1].replace("_", " ")) for k in study_keys]
        parts += ["<ul>"] + [f"<li>{html.escape(f)}</li>" for f in study_findings] + ["</ul>"]
    if "speed" in report.figures:
        parts += ['<h2 id="speed">Speed</h2>', _img(report, "speed", "speed benchmark")]
    parts += ['<h2 id="provenance">Provenance</h2>', "<dl>"]
    parts += [f"<dt>{html.escape(k)}</dt><dd>{html.escape(v)}</dd>" for k, v in report.provenance]
    return parts + ["</dl>", f"<script>{_JS}</script>", "</body></html>"]


def render(report: Report) -> str:
    """``leaderboard.html``: the page, in reading order (see the module docstring)."""
    anchors = _anchors(report.tasks)
    parts = _head(report) + _overall_section(report, anchors) + _findings_section(report, anchors) + _tail(report)
    return "\n".join(p for p in parts if p)
