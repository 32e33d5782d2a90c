import pytest

from tests.integration import lab_support as lab


@pytest.fixture(scope="session")
def test_lab():
    """A real lab (PostgreSQL x2, sshd x2, moto) for the whole session, in .lab-test/."""
    from migrate.lab import services
    services.up(lab.LAB_DIR, ports=services.LabPorts(**lab.PORTS), employees=12, years=1, seed=7)
    lab.write_inventory()
    yield lab
    services.down(lab.LAB_DIR)


@pytest.fixture
def clean_lab(test_lab):
    test_lab.reset()
    yield test_lab
