"""The adapters against the real lab, when the component fails under them (#13 item 7)."""

import subprocess
import sys

import pytest

from tests.integration import lab_support as lab

pytestmark = pytest.mark.integration

# A process of its own: what Python prints on stderr for a logger with no handler is the point,
# and pytest's log capture would hide it.
COPY_INTO_A_LOST_CONNECTION = """
import time, psycopg
from psycopg import sql
from migrate.adapters import db
conn = psycopg.connect({dsn!r})
conn.execute("CREATE TEMP TABLE t (x int)")
pid = conn.info.backend_pid
def blocks():
    yield b"1\\n"
    with psycopg.connect({dsn!r}, autocommit=True) as other:
        other.execute("SELECT pg_terminate_backend(%s)", (pid,))
    time.sleep(0.3)
    for _ in range(50):
        yield b"2\\n" * 100000
try:
    db.copy_in(conn, sql.SQL("COPY t FROM STDIN"), blocks())
except psycopg.OperationalError as exc:
    print("raised", type(exc).__name__, flush=True)
import logging
logging.getLogger("psycopg").warning("another psycopg warning")
"""


def test_a_copy_into_a_lost_connection_raises_and_leaks_nothing_on_stderr(test_lab):
    code = COPY_INTO_A_LOST_CONNECTION.format(dsn=lab.dsn("target", "postgres"))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=lab.ROOT)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "raised OperationalError", "the error itself still reaches the caller"
    assert "error ignored terminating" not in proc.stderr and "[BAD]" not in proc.stderr, proc.stderr
    assert "another psycopg warning" in proc.stderr, "only that one message is silenced"
