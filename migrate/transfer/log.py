"""The transfer log: the copy's own records inside the wave's journal, and reading them back.

Three records, three places: the engine's journal holds every run, step and side effect; the
transfer log is the part of it written from inside one operation (chunks, document batches,
restore intents); the `ledger` lives in the target database itself.

The executor journals the action `restore database X`; inside it, each chunk that reaches the
bucket is recorded (`chunk_staged`: object, table, range, rows, bytes, SHA-256, version) right
after its upload completes, and each chunk that reaches the target (`chunk_loaded`) right after
its transaction commits. Records hold names, counts and hashes, never row values. A rerun of
the same run reads them: a staged chunk is not uploaded again; any other object at a chunk's
key is the leftover of a killed attempt and is deleted first (one version per staged object).
Loads are decided by the target's ledger (see `ledger`), which the journal mirrors. The archive
records its batches of staged documents (`archive_batch`) and the restore its intents
(`archive_restore_intent`) the same way.

Only the coordinating thread writes here: SQLite connections do not cross threads.
"""

from __future__ import annotations

STAGED = "chunk_staged"
LOADED = "chunk_loaded"
COMPLETE = "load_complete"
ARCHIVE_BATCH = "archive_batch"
RESTORE_INTENT = "archive_restore_intent"


class TransferLog:
    """`journal`: the engine's journal (anything with its `append` and `records`)."""

    def __init__(self, journal, run_id: str, wave: str, step: str | None = None):
        self.journal, self.run_id, self.wave, self.step = journal, run_id, wave, step

    def _records(self, kind: str, scope: str) -> list[dict]:
        return [r.data for r in self.journal.records(run_id=self.run_id)
                if r.kind == kind and r.data.get("scope") == scope]

    def append(self, kind: str, scope: str, data: dict) -> None:
        self.journal.append(self.run_id, self.wave, kind, {"scope": scope, **data}, step=self.step)

    def records_of(self, kind: str, scope: str) -> list[dict]:
        return self._records(kind, scope)

    def staged(self, scope: str) -> dict[str, dict]:
        return {d["chunk"]: d for d in self._records(STAGED, scope)}

    def complete(self, scope: str) -> bool:
        return bool(self._records(COMPLETE, scope))

    def batches(self, scope: str) -> list[dict]:
        return self._records(ARCHIVE_BATCH, scope)

    def restore_intents(self, scope: str) -> list[dict]:
        return self._records(RESTORE_INTENT, scope)
