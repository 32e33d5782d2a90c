"""The local lab: PostgreSQL clusters, SSH hosts and an S3 endpoint on 127.0.0.1."""
