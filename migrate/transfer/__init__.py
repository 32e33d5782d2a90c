"""The data transfer engine: databases and the document archive, through S3, in parallel.

- `catalog`: what a database holds (tables, sequences, materialized views); verification reads
  it too.
- `chunks`: how each table is cut into chunks (plain data).
- `dbcopy`: the pipeline: COPY out -> zstd -> SHA-256 -> S3 upload, and, overlapped with it,
  download -> SHA-256 check -> COPY in, one transaction per chunk; then post-data in parallel.
- `postdata`: indexes, constraints and triggers of a schema archive, split into items.
- `ledger`: the target-side record of loaded chunks, written in the chunk's own transaction.
- `log`: the transfer log: the copy's records in the journal, and how a rerun reads them.
- `archive_stage`: the document archive over SFTP into the bucket.
- `archive_restore`: the staged archive from the bucket onto the target application host, checked.
- `roles`: owners and grants mapped from the source's roles to the target's; the roles a wave
  creates on the target.
- `way_back`: logical replication from the target back to the source after cutover, drained
  by a rollback.
- `pool`: the one bounded worker pool of all of them (and of verification), and the worker count.

Operations in `migrate.ops` call these. Every connection, process, object and remote file comes
from `migrate.adapters` (`db`, `cloud`, `ssh`); the modules here run SQL on the connections they
are given, and touch no disk but temporary files of their own.
"""
