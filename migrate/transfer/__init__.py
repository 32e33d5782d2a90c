"""The data transfer engine: databases and the document archive, through S3, in parallel.

- `chunks`: which tables a database has and how each is cut into chunks (plain data).
- `dbcopy`: the pipeline: COPY out -> zstd -> SHA-256 -> S3 upload, and, overlapped with it,
  download -> SHA-256 check -> COPY in, one transaction per chunk; then post-data in parallel.
- `postdata`: indexes, constraints and triggers of a schema archive, split into items.
- `ledger`: the target-side record of loaded chunks, written in the chunk's own transaction.
- `log`: what the journal says about chunks (the transfer log) and how a rerun reads it.
- `archive`: the document archive over SFTP into the bucket.
- `restore`: the staged archive from the bucket onto the target application host, checked.
- `roles`: owners and grants mapped from the source's roles to the target's; the roles a wave
  creates on the target.

Steps in `migrate.steps` plan with these and register the operations; all I/O goes through
`migrate.adapters`.
"""
