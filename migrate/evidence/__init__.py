"""The evidence pack of one run of a wave: gathered from the journal and the verification report,
written as a directory (and a tar of it) that an assessor can check offline with nothing but
this package: manifest.json (schema in manifest.schema.json), results/, journal.jsonl,
report.html, SHA256SUMS and, when a key is configured, signed attestations."""
