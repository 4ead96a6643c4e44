"""The markdown report: header, summary table, one section per verdict, provenance.

A pure function of the verdicts and the session's facts (:func:`render_markdown`); writing the
files is :mod:`wd_claims.files`'s job.
"""

from __future__ import annotations

import json
import re
from types import MappingProxyType

from wd_claims.verdict import STATUSES, Check, Verdict, fmt


def _cell(text: str, limit: int = 0) -> str:
    """``text`` safe for one markdown table cell (``|`` escaped, one line), cut at ``limit``."""
    text = " ".join(str(text).split()).replace("|", "\\|")
    return text if not limit or len(text) <= limit else text[: limit - 1].rstrip() + "…"


_BADGE = MappingProxyType({"pass": "PASS", "fail": "**FAIL**", "skip": "skip",
                           "xfail": "expected failure"})


def _anchors(verdicts: list[Verdict]) -> list[str]:
    """One unique HTML anchor per verdict: ``<id>-<model>``, numbered when a pair repeats."""
    seen: dict[str, int] = {}
    out = []
    for v in verdicts:
        base = f"{v.id}-{v.context.get('model', '')}".lower().strip("-")
        base = re.sub(r"[^a-z0-9]+", "-", base).strip("-")
        seen[base] = seen.get(base, 0) + 1
        out.append(base if seen[base] == 1 else f"{base}-{seen[base]}")
    return out


def render_markdown(verdicts: list[Verdict], session: dict) -> str:
    """The whole report: header, summary table, one section per verdict, provenance."""
    verdicts = sorted(verdicts, key=_sort_key)
    anchors = _anchors(verdicts)
    counts = {s: sum(v.status == s for v in verdicts) for s in STATUSES}
    lines = [
        "# Weight-decay claims: verification report",
        "",
        "Claims of A. Labatie, *The Serendipitous Effectiveness of Weight Decay in Deep Learning* "
        "(Towards Data Science, 2020), checked by `pytest claims/`. "
        "Quotes are the article's words.",
        "",
        f"**Budget** `{session.get('budget')}` · **device** {session.get('device')} · "
        f"**started** {session.get('started')} · "
        + " · ".join(f"{n} {_BADGE[s].strip('*')}" for s, n in counts.items() if n),
        "",
    ]
    if session.get("incomplete"):
        lines += [f"> **Incomplete run:** {session['incomplete']} Only the claims that finished "
                  "are reported below.", ""]
    if session.get("data_note"):
        lines += [f"> **Data:** {session['data_note']}", ""]
    lines += [
        "Convention: the article's loss term λ‖w‖² is `torch.optim.SGD(weight_decay=2λ)`; every λ "
        "below is the article's. u = w/‖w‖, G = ‖∇L(u|B)‖ = ‖g‖·‖w‖.",
        "",
    ]
    if session.get("budget_note"):
        lines += [f"> {session['budget_note']}", ""]
    lines += ["## Summary", "",
              "Each row's verdict is the article's statement, judged at the resolution given; "
              "the identities (true of any correct engine), premises and control back it "
              "(docs/claims.md, \"Two kinds of check\").", "",
              "| id | claim | model · data | the article's statement, measured | resolution | "
              "backed by | verdict |",
              "|---|---|---|---|---|---|---|"]
    for v, anchor in zip(verdicts, anchors, strict=True):
        ctx = v.context
        verdict = _BADGE[v.status] + (f": {_cell(v.reason, 80)}"
                                      if v.status != "pass" and v.reason else "")
        lines.append(
            f"| [{v.id}](#{anchor}) | {_cell(v.title)} | {_cell(ctx.get('model') or '–')} · "
            f"{_cell(_short(ctx.get('data') or '–'))} | {_statements(v)} | "
            f"{_cell(_resolutions(v), 160)} | {_backing(v)} | {verdict} |")
    lines.append("")
    for v, anchor in zip(verdicts, anchors, strict=True):
        lines += _section(v, anchor)
    lines += ["## Provenance", "", "```", json.dumps(session.get("provenance", {}), indent=2),
              "```", ""]
    return "\n".join(lines)


def _statements(v: Verdict) -> str:
    """The summary's cell of a verdict's statement checks: name, measured, held or missed (the
    verdict's expectation and headline number where it carries no labelled statement)."""
    stated = [c for c in v.checks if c.kind == "statement"]
    if not stated:
        return _cell(f"{v.expected or '–'}: {fmt(_headline(v.measured))}", 160)
    return "; ".join(f"{_cell(c.name)}: {_cell(fmt(c.measured), 60)} "
                     f"{'✓' if c.holds else '**✗**'}" for c in stated)


def _resolutions(v: Verdict) -> str:
    return "; ".join(dict.fromkeys(c.resolution for c in v.checks
                                   if c.kind == "statement" and c.resolution)) or fmt(v.tolerance)


def _backing(v: Verdict) -> str:
    """"identities 3/3 · premises 1/1 · control rejected": how many of each backing kind hold."""
    parts = []
    for kind, label in (("identity", "identities"), ("premise", "premises"),
                        ("prediction", "predictions")):
        these = [c for c in v.checks if c.kind == kind]
        if these:
            parts.append(f"{label} {sum(c.holds for c in these)}/{len(these)}")
    controls = [c for c in v.checks if c.kind == "control"]
    if controls:
        parts.append("control " + ("rejected" if all(c.holds for c in controls)
                                   else "**not rejected**"))
    return " · ".join(parts) or "–"


def _short(label) -> str:
    """A data label without its parenthesised detail, for the summary ("stand-in (…)" → "stand-in");
    the section gives it whole."""
    return str(label).split(" (", 1)[0]


def _sort_key(v: Verdict):
    kind, num = v.id[:1], v.id[1:]
    return (kind != "C", int(num) if num.isdigit() else 99, v.context.get("model", ""), v.test)


def _headline(measured):
    """The one number of ``measured`` that goes in the summary (its ``headline`` key if a dict)."""
    if isinstance(measured, dict):
        return measured.get("headline", "see section")
    return measured


def _section(v: Verdict, anchor: str) -> list[str]:
    ctx = v.context
    model = f" ({ctx['model']})" if ctx.get("model") else ""
    out = [f'<a id="{anchor}"></a>', f"## {v.id} — {v.title}{model}", ""]
    if v.quote:
        out += [f"> “{v.quote}” — Labatie (2020)", ""]
    out += [f"**Verdict: {_BADGE[v.status]}**" + (f" — {v.reason}" if v.reason else ""), ""]
    if v.status == "skip" and not (v.expected or v.measured is not None or v.control):
        out += [line for table in v.tables for line in (table, "")]  # e.g. an invariance map
        return out + ([f"- test: `{v.test}`", ""] if v.test else [])  # nothing was measured
    out += [f"- model: {ctx.get('model', '–')}; data: {ctx.get('data', '–')}; "
            f"dtype: {ctx.get('dtype', '–')}; seed(s): {ctx.get('seed', '–')}; "
            f"budget: {ctx.get('budget', '–')}; device: {ctx.get('device', '–')}"
            + (f"; torch threads while measuring: {ctx['torch_threads']}"
               if "torch_threads" in ctx else ""),
            f"- expected: {v.expected or '–'}",
            f"- predicted: {fmt(v.predicted)}",
            f"- measured: {fmt(v.measured)}",
            f"- tolerance: {fmt(v.tolerance)} — {v.tolerance_reason or 'n/a'}"]
    if v.setting:
        out += _setting_lines(v.setting)
    if v.resolves:
        out.append(f"- resolves: {v.resolves}")
    if v.control:
        c = v.control
        if c.get("measured") is None and "no control" in str(c.get("status", "")):
            out.append(f"- negative control: {c.get('description') or c.get('status')}")
        else:
            out.append(f"- negative control: {c.get('description', '')} → measured "
                       f"{fmt(c.get('measured'))}, **{c.get('status', '?')}** by the same "
                       "criterion")
    if v.test:
        out.append(f"- test: `{v.test}`")
    out.append("")
    if v.checks:
        out += _checks_table(v.checks, "criterion")
    if v.conditions:
        out += _checks_table(v.conditions, "measured condition")
    if v.derivation:
        out += ["<details><summary>sympy derivation</summary>", "", "```", v.derivation, "```", "",
                "</details>", ""]
    for table in v.tables:
        out += [table, ""]
    for fig in v.figures:
        out += [f"![{v.id} {ctx.get('model', '')}]({fig})", ""]
    for note in v.notes:
        out += [f"- {note}"]
    if v.notes:
        out.append("")
    return out


def _checks_table(checks: list[Check], kind: str) -> list[str]:
    """A verdict's checks (or conditions) as one markdown table."""
    rows = [f"| {kind} | kind | measured | tolerance | rule | holds |", "|---|---|---|---|---|---|"]
    rows += [f"| {_cell(c.name)} | {c.kind}{'' if c.core else ' (may be declared)'} | "
             f"{_cell(fmt(c.measured), 120)} | {_cell(fmt(c.tolerance), 80)} | "
             f"{_cell(c.criterion + (f'; resolves {c.resolution}' if c.resolution else ''), 200)}"
             f" | {'yes' if c.holds else '**no**'} |" for c in checks]
    return rows + [""]


_SETTING_ORDER = ("model", "width", "w", "data", "steps", "batch", "trains", "start",
                  "precision", "seeds", "optimizer")


def _setting_lines(setting: dict) -> list[str]:
    """What a verdict stands on, then its deviations from the article's Fig. 2 setting."""
    keys = [k for k in _SETTING_ORDER if k in setting] + sorted(
        k for k in setting if k not in _SETTING_ORDER and k != "deviations")
    out = ["- setting: " + " · ".join(f"{k}: {_cell(fmt(setting[k]))}" for k in keys)]
    deviations = setting.get("deviations") or []
    out.append("- deviations from the article's Fig. 2 setting: "
               + ("; ".join(deviations) if deviations else "none"))
    return out
