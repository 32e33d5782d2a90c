"""The local lab: PostgreSQL clusters, SSH hosts and an S3 endpoint on 127.0.0.1.

Callers use `migrate.lab.api`; `migrate.lab.data` is the synthetic data (see CONTRACT.md)."""
