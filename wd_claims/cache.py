"""A disk cache of expensive results: numeric arrays in ``.npz``, provenance in a ``.json`` sidecar.

An entry is keyed by the sha256 of its *fields* (for a training run: the full ``TrainConfig``, the
data's name and size, the device kind, the dtype, library versions and a hash of the code; see
``wd_claims.train.cache_fields``) and lives in two files, ``<key>.npz`` and ``<key>.json``.

Safety, in the order a reader meets it:

- Nothing is pickled: arrays must be numeric to be stored, and are read with
  ``np.load(allow_pickle=False)``; metadata is JSON.
- Writes are atomic: each file goes to a temporary name in the same folder, is flushed to disk and
  renamed over the final name (``os.replace``). The old sidecar is removed *before* the new arrays
  are written and the new sidecar written *last*: the ``.json`` is the commit marker, and an
  ``.npz`` without its ``.json`` (a run killed mid-write) is never trusted.
- The sidecar holds the sha256 of the ``.npz`` bytes. A truncated or altered file (checksum, an
  unreadable archive, a malformed sidecar, or — checked by the caller — missing keys or wrong
  shapes) is reported with a :class:`CorruptCacheWarning` naming the file, deleted, and recomputed.
- ``fresh=True`` ignores every entry not in ``written``, the entries this session wrote itself (the
  set belongs to the caller, e.g. the session's :class:`~wd_claims.scheduler.Scheduler`, which also
  adds the entries its worker processes wrote): within one pytest session with ``--fresh``, the
  first claim trains and the later ones reuse its run.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
import warnings
import zipfile
from io import BytesIO
from pathlib import Path

import numpy as np

FORMAT = 1

class CorruptCacheWarning(UserWarning):
    """A cache entry could not be trusted; it was deleted and will be recomputed."""


def fields_key(fields: dict) -> str:
    """sha256 (hex) of ``fields`` as canonical JSON (sorted keys; tuples become lists)."""
    text = json.dumps(fields, sort_keys=True, ensure_ascii=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    for name, array in arrays.items():
        if not isinstance(array, np.ndarray) or array.dtype.kind not in "biuf":
            raise TypeError(f"cache refuses {name!r} ({type(array).__name__}, "
                            f"{getattr(array, 'dtype', '?')}): only numeric arrays, never pickle")
    buffer = BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


class Cache:
    """``load(fields)`` → (arrays, meta) or None; ``store(fields, arrays, meta)``."""

    def __init__(self, directory: str | os.PathLike, fresh: bool = False,
                 written: set[tuple[str, str]] | None = None):
        self.directory = Path(directory)
        self.fresh = fresh
        self.written = set() if written is None else written   # (folder, key) this session wrote

    key = staticmethod(fields_key)

    def paths(self, key: str) -> tuple[Path, Path]:
        """(arrays file, sidecar) of an entry."""
        return self.directory / f"{key}.npz", self.directory / f"{key}.json"

    def entry(self, key: str) -> tuple[str, str]:
        """(folder, key): how ``written`` names an entry."""
        return (str(self.directory.resolve()), key)

    def _written_here(self, key: str) -> bool:
        return self.entry(key) in self.written

    def load(self, fields: dict) -> tuple[dict[str, np.ndarray], dict] | None:
        """The entry for ``fields``, or None when absent, uncommitted, ignored (``fresh``) or
        corrupt (then warned about and deleted)."""
        key = self.key(fields)
        npz, sidecar = self.paths(key)
        if self.fresh and not self._written_here(key):
            return None
        if not sidecar.exists():      # never written, or killed before its commit marker
            return None
        try:
            record = json.loads(sidecar.read_text())
            expected = record["sha256"]
            if record.get("key") != key or record.get("format") != FORMAT:
                raise ValueError("the sidecar describes another entry")
        except (OSError, ValueError, KeyError, TypeError) as exc:
            self.discard(key, f"unreadable sidecar {sidecar.name} ({exc})")
            return None
        try:
            data = npz.read_bytes()
        except OSError as exc:
            self.discard(key, f"arrays file unreadable ({exc})")
            return None
        if hashlib.sha256(data).hexdigest() != expected:
            self.discard(key, "checksum mismatch (truncated or altered)")
            return None
        try:
            with np.load(BytesIO(data), allow_pickle=False) as archive:
                arrays = {name: archive[name] for name in archive.files}
        except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as exc:
            self.discard(key, f"unreadable arrays ({type(exc).__name__}: {exc})")
            return None
        return arrays, record.get("meta", {})

    def store(self, fields: dict, arrays: dict[str, np.ndarray], meta: dict) -> str:
        """Write an entry (atomically, sidecar last); returns its key."""
        key = self.key(fields)
        npz, sidecar = self.paths(key)
        data = _npz_bytes(arrays)
        self.directory.mkdir(parents=True, exist_ok=True)
        sidecar.unlink(missing_ok=True)          # uncommit the old entry before replacing it
        _atomic_write(npz, data)
        record = {"format": FORMAT, "key": key, "sha256": hashlib.sha256(data).hexdigest(),
                  "bytes": len(data), "fields": fields, "meta": meta,
                  "arrays": {n: [str(a.dtype), list(a.shape)] for n, a in arrays.items()}}
        _atomic_write(sidecar, json.dumps(record, indent=1, ensure_ascii=False).encode())
        self.written.add(self.entry(key))
        return key

    def discard(self, key: str, reason: str) -> None:
        """Warn that entry ``key`` is not trusted (naming its file) and delete it."""
        npz, sidecar = self.paths(key)
        warnings.warn(f"cache entry {npz} is corrupt: {reason}; deleted, recomputing",
                      CorruptCacheWarning, stacklevel=3)
        sidecar.unlink(missing_ok=True)
        npz.unlink(missing_ok=True)
