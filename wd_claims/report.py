"""Verdict records and the markdown/JSON report written at the end of a pytest session.

A :class:`Verdict` is everything a reviewer needs for one claim on one model: the article's words,
the sympy derivation, prediction, measurement, tolerance with its reason, status, the negative
control and the run's provenance. The plugin gathers them (through ``user_properties``, so xdist
workers' verdicts reach the controller) and :func:`write_report` renders them.
"""

from __future__ import annotations

import json
import math
import os
import re
import tempfile
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from wd_claims.judge import STATUSES, Check


@dataclass
class Verdict:
    id: str                          # claim id, "C0" … "C10", or "E1" … for extensions
    title: str                       # one line: what is claimed
    quote: str = ""                  # the article's words (short, attributed in the report)
    expected: str = ""               # the expectation as a formula
    derivation: str = ""             # sympy's printout of the derivation
    predicted: object = None         # numbers the derivation predicts
    measured: object = None          # numbers measured (a float or a dict of them)
    tolerance: object = None         # the acceptance threshold(s)
    tolerance_reason: str = ""       # where the tolerance comes from
    status: str = "skip"             # decided by wd_claims.judge.decide from ``checks``, never set
                                     # by a claim (a claim sets only "skip": nothing was measured)
    reason: str = ""                 # why it failed, was skipped, or is an expected failure
    checks: list[Check] = field(default_factory=list)      # the criteria, core and non-core
    conditions: list[Check] = field(default_factory=list)  # measured facts expected failures cite
    setting: dict = field(default_factory=dict)  # what the verdict stands on (wd_claims.setting)
    resolves: str = ""               # the smallest deviation the criterion resolves, in words
    measurements: str = ""           # the recorded measurements' file, relative to the report
    control: dict = field(default_factory=dict)   # {"description", "measured", "status"}
    figures: list[str] = field(default_factory=list)
    tables: list[str] = field(default_factory=list)  # extra markdown tables for the section
    notes: list[str] = field(default_factory=list)
    context: dict = field(default_factory=dict)   # model, data, budget, device, dtype, seed…
    test: str = ""                   # pytest node id

    def __post_init__(self):
        if self.status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, got {self.status!r}")

    def to_json(self) -> dict:
        return _jsonable(asdict(self))

    @classmethod
    def from_json(cls, data: dict) -> Verdict:
        fields = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        for key in ("checks", "conditions"):
            fields[key] = [c if isinstance(c, Check) else Check.from_json(c)
                           for c in fields.get(key, [])]
        return cls(**fields)


def _jsonable(obj):
    """Plain numbers, strings, lists and dicts only (what JSON and pytest-xdist's execnet can
    carry): numpy/torch scalars become floats, subclasses of str/int/float (``torch.__version__``,
    enums) their base type, NaN stays NaN, anything else its ``str``."""
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if obj is None:
        return obj
    for kind in (bool, str, int, float):
        if isinstance(obj, kind):
            return kind(obj)
    if hasattr(obj, "tolist"):  # numpy / torch arrays and scalars
        return _jsonable(obj.tolist())
    return str(obj)


def fmt(value, digits: int = 3) -> str:
    """Compact human formatting for report tables."""
    if value is None:
        return "–"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, (int, float)):
        if isinstance(value, float) and (math.isnan(value) or math.isinf(value)):
            return str(value)
        if value == 0:
            return "0"
        if isinstance(value, int) or (1e-3 <= abs(value) < 1e4):
            return f"{value:.{digits}g}"
        return f"{value:.{digits - 1}e}"
    if isinstance(value, dict):
        inner = ", ".join(f"{k}={_nested(v, digits)}" for k, v in value.items())
        return inner
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(fmt(v, digits) for v in value) + "]"
    return str(value)


def _nested(value, digits: int) -> str:
    """A value inside a dict: nested dicts keep their braces so that the levels stay readable."""
    return "{" + fmt(value, digits) + "}" if isinstance(value, dict) else fmt(value, digits)


def _cell(text: str, limit: int = 0) -> str:
    """``text`` safe for one markdown table cell (``|`` escaped, one line), cut at ``limit``."""
    text = " ".join(str(text).split()).replace("|", "\\|")
    return text if not limit or len(text) <= limit else text[: limit - 1].rstrip() + "…"


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and ``os.replace``: a crash or a full
    disk leaves the previous file untouched, and readers never see a half-written one."""
    atomic_write_texts({Path(path): text})


def atomic_write_texts(files: dict[Path, str]) -> None:
    """Write several files all-or-nothing (as far as a file system allows): every text is first
    written and fsynced to a temporary file beside its target, and only when all of them are on
    disk are they renamed into place. A full disk or a crash while writing leaves every previous
    file untouched (no new ``latest.md`` beside an old ``latest.json``); ``os.replace`` itself
    allocates nothing, so it does not fail on a full disk."""
    staged: list[tuple[str, Path]] = []
    try:
        for path, text in files.items():
            fd, tmp = tempfile.mkstemp(dir=Path(path).parent, prefix=f".{Path(path).name}.",
                                       suffix=".tmp")
            staged.append((tmp, Path(path)))
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(text)
                fh.flush()
                os.fsync(fh.fileno())
        for tmp, path in staged:
            os.replace(tmp, path)
    except BaseException:
        for tmp, _ in staged:
            Path(tmp).unlink(missing_ok=True)
        raise


def save_figure(fig, report_dir: Path, filename: str) -> str:
    """Save a matplotlib ``fig`` as ``report_dir/figures/filename`` atomically (two concurrent
    sessions sharing a report folder never leave a half-written PNG) and return the path to list
    in :attr:`Verdict.figures`, relative to the report (``"figures/<filename>"``)."""
    target = Path(report_dir) / "figures" / filename
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fig.savefig(fh, format=target.suffix.lstrip(".") or "png", dpi=110)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return f"figures/{filename}"


def save_measurements(report_dir: Path, name: str, measurements: dict) -> str:
    """Save a claim's recorded measurements as ``report_dir/measurements/<name>.npz`` (atomic) and
    return the path relative to the report. ``measurements``: {str: array, number or string}; no
    pickles, so a saved file can be loaded anywhere and fed to the claim's judge again (the
    injected-fault tests in tests/ do exactly that)."""
    import numpy as np

    target = Path(report_dir) / "measurements" / f"{name}.npz"
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            np.savez_compressed(fh, **{k: np.asarray(v) for k, v in measurements.items()})
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return f"measurements/{name}.npz"


def load_measurements(path: Path) -> dict:
    """The dict :func:`save_measurements` wrote: arrays as numpy arrays, 0-d entries as Python
    scalars (float, int, bool or str)."""
    import numpy as np

    with np.load(path, allow_pickle=False) as data:
        return {k: (data[k].item() if data[k].ndim == 0 else data[k]) for k in data.files}


def redact(text: str) -> str:
    """``text`` with the user's home directory written ``~``: reports are shared, the layout of
    the machine that produced them is not theirs to publish (paths in skip reasons and error
    messages are the usual carriers)."""
    home = str(Path.home()).rstrip("/")
    if not home:  # HOME=/ : nothing to hide, and "/" is in every path
        return text
    return re.sub(re.escape(home) + r"(?![\w.-])", "~", text)


def redact_data(obj):
    """:func:`redact` applied to every string (keys included) of a JSON-like structure; done
    before serialising, so that JSON's escapes cannot hide a home directory from it."""
    if isinstance(obj, dict):
        return {redact_data(k): redact_data(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [redact_data(v) for v in obj]
    return redact(obj) if isinstance(obj, str) else obj


_BADGE = {"pass": "PASS", "fail": "**FAIL**", "skip": "skip", "xfail": "expected failure"}


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
              "| id | claim | model · data | expected | measured | tolerance | verdict |",
              "|---|---|---|---|---|---|---|"]
    for v, anchor in zip(verdicts, anchors, strict=True):
        ctx = v.context
        verdict = _BADGE[v.status] + (f": {_cell(v.reason, 80)}"
                                      if v.status != "pass" and v.reason else "")
        lines.append(
            f"| [{v.id}](#{anchor}) | {_cell(v.title)} | {_cell(ctx.get('model') or '–')} · "
            f"{_cell(_short(ctx.get('data') or '–'))} | {_cell(v.expected or '–')} | "
            f"{_cell(fmt(_headline(v.measured)))} | {_cell(fmt(v.tolerance))} | {verdict} |")
    lines.append("")
    for v, anchor in zip(verdicts, anchors, strict=True):
        lines += _section(v, anchor)
    lines += ["## Provenance", "", "```", json.dumps(session.get("provenance", {}), indent=2),
              "```", ""]
    return "\n".join(lines)


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
    rows = [f"| {kind} | core | measured | tolerance | rule | holds |", "|---|---|---|---|---|---|"]
    rows += [f"| {_cell(c.name)} | {'core' if c.core else 'sub-statement'} | "
             f"{_cell(fmt(c.measured), 120)} | {_cell(fmt(c.tolerance), 80)} | "
             f"{_cell(c.criterion, 160)} | {'yes' if c.holds else '**no**'} |" for c in checks]
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


def write_report(verdicts: list[Verdict], session: dict, report_dir: Path) -> Path:
    """Write ``<timestamp>-<device>-<budget>-<pid>.md`` and ``.json``; refresh ``latest.*``.

    Returns the path of the timestamped markdown file. The process id in the name keeps two
    concurrent pytest sessions from writing to the same file; all four files are staged first and
    renamed into place together (:func:`atomic_write_texts`), so ``latest.md`` and ``latest.json``
    are each a whole report, and a failure (a full disk) leaves the previous ones intact.
    """
    report_dir = Path(report_dir)
    report_dir.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    stem = f"{stamp}-{session.get('device_kind', 'cpu')}-{session.get('budget')}-{os.getpid()}"
    data = redact_data([v.to_json() for v in verdicts])
    md = render_markdown([Verdict.from_json(d) for d in data], redact_data(_jsonable(session)))
    # The JSON is a list of verdicts; each verdict's ``context`` carries the provenance.
    js = json.dumps(data, indent=2, allow_nan=True)
    atomic_write_texts({report_dir / f"{stem}.md": md, report_dir / f"{stem}.json": js,
                        report_dir / "latest.md": md, report_dir / "latest.json": js})
    return report_dir / f"{stem}.md"


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
