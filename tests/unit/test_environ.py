import os

from migrate.adapters import environ


def test_libpq_variables_leave_the_environment_but_stay_readable(monkeypatch):
    monkeypatch.setenv("PGPASSWORD", "from-the-shell")
    monkeypatch.setenv("PGOPTIONS", "-c TimeZone=Asia/Tokyo")
    monkeypatch.setenv("HOME_PG_NOT", "kept")
    monkeypatch.setattr(environ, "HELD", {})
    environ.hold_libpq_variables()
    assert "PGPASSWORD" not in os.environ and "PGOPTIONS" not in os.environ
    assert os.environ["HOME_PG_NOT"] == "kept"
    assert environ.get("PGPASSWORD") == "from-the-shell"
    assert environ.get("NOT_SET_ANYWHERE") is None
