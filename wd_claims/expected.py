"""The declared expected failures: the one table, strict (see :mod:`wd_claims.judge`).

Each row names a claim, the non-core statement expected to miss (a ``Check.name`` of that claim's
verdict), the measured condition that explains the miss (a ``Check.name`` among the verdict's
``conditions``, which must hold) and why. A row whose statement holds, or whose condition does not,
turns the verdict into a FAIL: the table cannot hide a failure, and it cannot go stale unnoticed.
A core criterion can never be listed. Rows are per claim, in claim order; ``budgets`` limits a row
to the budgets where its cause applies. The catalogue of what each claim states is docs/claims.md.
"""

from __future__ import annotations

from wd_claims.judge import ExpectedFailure

EXPECTED_FAILURES: tuple[ExpectedFailure, ...] = (
)
