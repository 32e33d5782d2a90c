"""The journal's second anchor: its head (last sequence number and hash) also kept in the staging
bucket, off this machine, so that a journal cut back together with the head file beside it is
still caught. One small object per journal, `journal-anchors/<first record's hash>.head`,
outside every wave's prefix: a rollback or finalize never deletes it (it is evidence, like the
journal). Sent at the end of each step, undo and run; best effort both ways: an unreachable
bucket never stops a run or a rollback (the anchor beside the file still holds)."""

from __future__ import annotations

from botocore.exceptions import BotoCoreError, ClientError

from migrate.adapters import cloud
from migrate.config import Inventory
from migrate.errors import MigrateError

PREFIX = "journal-anchors"


class BucketAnchor:
    def __init__(self, inv: Inventory):
        self.inv, self._s3, self.down = inv, None, False

    def _client(self):
        if self._s3 is None:
            self._s3 = cloud.client(self.inv, pool=1, attempts=2, timeout=5)
        return self._s3

    def _key(self, first: str) -> str:
        return f"{PREFIX}/{first}.head"

    def put(self, first: str | None, seq: int, digest: str) -> bool:
        """False when not sent; after one failure this process stops trying (a hung endpoint must
        not slow every record of a rollback)."""
        if first is None or self.down:
            return False
        try:
            cloud.put_bytes(self.inv, self._client(), self._key(first), f"{seq} {digest}\n".encode())
            return True
        except (MigrateError, BotoCoreError, ClientError):
            self.down = True
            return False

    def get(self, first: str):
        try:
            body = self._client().get_object(Bucket=self.inv.spec.storage.bucket, Key=self._key(first))["Body"].read()
        except ClientError as exc:
            missing = exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404")
            return None if missing else "unreachable"
        except (MigrateError, BotoCoreError):
            return "unreachable"
        try:
            seq, digest = body.decode().split()
            return int(seq), digest
        except ValueError:
            return "unreadable"
