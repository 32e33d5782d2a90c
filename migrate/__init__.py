"""migrate: move a municipality's HR and attendance systems to a cloud, in waves."""

__version__ = "0.1.0"
