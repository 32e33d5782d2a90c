"""Where a run keeps things: its bucket prefixes and object keys, its step ids, its state files.

One place for every name two modules must agree on, so the copy, the restore, verification and
the evidence never rebuild a path of their own. Pure: no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

JOURNAL_FILE = "journal.sqlite"
EVIDENCE_OP = "verify.evidence_digest"  # the operation whose results are the "before" digests


def journal_path(state_dir: Path) -> Path:
    return state_dir / JOURNAL_FILE


def fqdn(name: str) -> str:
    """A DNS name with its final dot, as Route53 returns it."""
    return name if name.endswith(".") else name + "."


@dataclass(frozen=True)
class RunLayout:
    """The prefixes of one run under the spec's storage prefix."""

    storage_prefix: str
    wave: str
    run_id: str

    @property
    def run(self) -> str:
        return f"{self.storage_prefix}/{self.wave}/{self.run_id}"

    def database(self, name: str) -> str:
        return f"{self.run}/db/{name}"

    def documents(self, system: str) -> str:
        return f"{self.run}/docs/{system}"

    def documents_progress(self, system: str) -> str:
        return f"{self.run}/progress/docs/{system}"

    def restore_progress(self, system: str) -> str:
        return f"{self.run}/progress/restore/{system}"

    @property
    def expiry_rule_id(self) -> str:
        return f"migrate-staging-{self.run_id}"[:255]


def manifest_key(prefix: str) -> str:
    """The manifest of what was staged under a database's or an archive's prefix."""
    return f"{prefix}/manifest.json"


def schema_key(prefix: str) -> str:
    """A database's staged object definitions (pg_dump --schema-only, custom format)."""
    return f"{prefix}/schema.dump"


# --- step ids: the journal keys of steps, built here and nowhere else ------------------------

def freeze_id(host: str) -> str:
    return f"freeze:{host}"


def evidence_id(system: str, database: str) -> str:
    return f"{system}/evidence:{database}"


def staging_id(bucket: str) -> str:
    return f"staging:{bucket}"


def stage_db_id(system: str, database: str) -> str:
    return f"{system}/stage-db:{database}"


def create_db_id(system: str, database: str) -> str:
    return f"{system}/create-db:{database}"


def restore_db_id(system: str, database: str) -> str:
    return f"{system}/restore-db:{database}"


def stage_archive_id(system: str) -> str:
    return f"{system}/stage-archive"


def restore_archive_id(system: str) -> str:
    return f"{system}/restore-archive"


def archive_delta_id(system: str) -> str:
    """The warm wave's second pass over the archive, inside the freeze: only what changed."""
    return f"{system}/archive-delta"


def way_back_id(system: str, database: str) -> str:
    return f"{system}/way-back:{database}"


def start_id(host: str) -> str:
    return f"start:{host}"


def configure_id(host: str) -> str:
    return f"configure:{host}"


VERIFY_ID = "verify"
TARGET_HEALTH_ID = "target-health"
GATE_ID = "go-no-go"
SWITCH_ID = "switch-entry"
POST_CUTOVER_ID = "post-cutover"


# The warm path (`migrate sync`, then `migrate run`).
def sync_db_id(system: str, database: str) -> str:
    return f"{system}/sync-db:{database}"


def fence_db_id(system: str, database: str) -> str:
    return f"{system}/fence-db:{database}"


SYNCED_ID = "synced"              # where `migrate sync` stops: the copy streams, the source is live
CUTOVER_CHECK_ID = "cutover-check"  # before the freeze: caught up, no DDL since the sync began
