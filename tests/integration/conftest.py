import sys

import pytest

# The real generator, imported before any test module can swap in a stub (test_lab.py does,
# for its own lab): the session lab must always be seeded with real data.
from migrate.lab import data as real_data
from tests.integration import lab_support as lab


@pytest.fixture(scope="session")
def test_lab():
    """A real lab (PostgreSQL x2, sshd x3, moto, the web stand-ins) for the whole session."""
    from migrate.lab import api as lab_api
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(sys.modules, "migrate.lab.data", real_data)
        lab_api.up(lab.LAB_DIR, ports=lab_api.LabPorts(**lab.PORTS), employees=12, years=1, seed=7)
    lab.write_inventory()
    yield lab
    lab_api.down(lab.LAB_DIR)


@pytest.fixture
def clean_lab(test_lab):
    test_lab.reset()
    yield test_lab
