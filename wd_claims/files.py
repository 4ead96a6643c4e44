"""The report's files: atomic writes, figures, recorded measurements, redaction of the home folder,
and :func:`write_report` (the timestamped report and ``latest.*``, staged and renamed together).
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from datetime import datetime, timezone
from pathlib import Path

from wd_claims.render import render_markdown
from wd_claims.verdict import Verdict, _jsonable


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
