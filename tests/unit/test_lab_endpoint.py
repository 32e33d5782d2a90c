"""The lab's S3 endpoint when it does not answer (#13 item 7): a one-line LabError, and `up`
finds a server whose process runs but whose port is silent. No lab."""

import os
import socket
import time
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


class Forgetful:
    """An S3 client whose bucket lost its objects (the lab's moto after a restart)."""

    def get_object(self, **kwargs):
        from botocore.exceptions import ClientError
        raise ClientError({"Error": {"Code": "NoSuchKey", "Message": "The specified key does not exist."}}, "GetObject")

    def head_object(self, **kwargs):
        from botocore.exceptions import ClientError
        raise ClientError({"Error": {"Code": "404", "Message": "Not Found"}, "ResponseMetadata": {}}, "HeadObject")


@pytest.mark.parametrize("read, code", [
    (lambda s3: list(cloud_adapter().iter_object(s3, "b", "waves/w/r/db/personale/schema.dump")), "NoSuchKey"),
    (lambda s3: cloud_adapter().object_size(s3, "b", "waves/w/r/db/personale/schema.dump"), "404"),
])
def test_a_staged_object_the_bucket_lost_is_one_line_naming_it_and_the_way_out(read, code):
    from migrate.errors import StepFailed
    with pytest.raises(StepFailed) as lost:
        read(Forgetful())
    message = str(lost.value)
    assert message.startswith(f"staged object s3://b/waves/w/r/db/personale/schema.dump is missing ({code})")
    assert "roll back the wave and run it again" in message and "\n" not in message


def cloud_adapter():
    from migrate.adapters import cloud as adapter
    return adapter


def test_a_server_just_spawned_is_known_as_ours_at_once_and_a_zombie_is_not():
    """Right after exec the kernel shows an empty command line for a moment: a server `up` had
    just started was taken for one that died, and left running unrecorded."""
    from migrate.lab.processes import pid_is
    for _ in range(20):
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)", "lab-server", "-p", "1"])
        try:
            assert pid_is(child.pid, ["lab-server", "-p 1"])
        finally:
            child.kill()
        os.waitid(os.P_PID, child.pid, os.WEXITED | os.WNOWAIT)  # dead, not reaped: a zombie
        started = time.monotonic()
        assert not pid_is(child.pid, ["lab-server", "-p 1"]), "killed (a zombie until reaped)"
        assert time.monotonic() - started < 0.4
        child.wait()
