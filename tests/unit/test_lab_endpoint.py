"""The lab's S3 endpoint when it does not answer (#13 item 7): a one-line LabError, and `up`
finds a server whose process runs but whose port is silent. No lab."""

import socket
import subprocess
import sys

import pytest

from migrate.lab import cloud, supervisor
from migrate.lab.errors import LabError
from migrate.lab.layout import LabPorts, lab_paths


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def paths(tmp_path):
    p = lab_paths(tmp_path / "lab")
    p.s3_ini.parent.mkdir(parents=True)
    cloud.ensure_s3_credentials(p)
    return p


@pytest.mark.parametrize("call", [cloud.ensure_bucket, cloud.empty_bucket, cloud.reset_dns])
def test_an_endpoint_that_refuses_is_one_line_naming_it(paths, call):
    port = free_port()
    with pytest.raises(LabError) as refused:
        call(paths, port)
    message = str(refused.value)
    assert message.startswith(f"the S3 endpoint http://127.0.0.1:{port} does not answer (EndpointConnectionError)")
    assert "\n" not in message and "`migrate lab up` restarts it" in message


def test_a_running_server_with_a_silent_port_is_found(paths):
    port = free_port()
    ports = LabPorts(s3=port)
    # A process that looks like our moto (its identity) but never listens.
    impostor = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", str(cloud.moto_binary()),
                                 "-p", str(port)])
    try:
        state = {"pids": {"s3": impostor.pid}}
        assert supervisor.unanswering(paths, state, ports, grace=0.3) == [(supervisor.Service("s3", "moto", port),
                                                                           impostor.pid)]
    finally:
        impostor.kill()
        impostor.wait()
    assert supervisor.unanswering(paths, state, ports, grace=0.3) == []
