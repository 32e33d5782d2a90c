"""Preflight: read-only checks before a wave. `run` gathers each check's facts through the
adapters; `judge` turns facts into pass / warn / fail with one line of reason and is pure, so
unit tests feed it canned facts and the integration suite runs the whole on the real lab."""

from migrate.preflight.judge import Finding, Pace, failed, passed, warned
from migrate.preflight.run import run_checks, wave_hosts

__all__ = ["Finding", "Pace", "failed", "passed", "warned", "run_checks", "wave_hosts"]
