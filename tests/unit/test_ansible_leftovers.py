"""What a killed orchestrator's playbooks leave running is stopped before the next command acts:
real processes, found by the ANSIBLE_LOCAL_TEMP of this inventory's playbooks in their environment."""

import os
import subprocess
import sys
import time

from migrate.adapters import ansible


class Inv:
    def __init__(self, state_dir):
        self.state_dir = state_dir


def sleeper(**env) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN);"
                             " time.sleep(60)"], env={**os.environ, **env}, start_new_session=True)


def test_leftover_workers_of_this_inventory_are_stopped_and_others_left_alone(tmp_path):
    ours = sleeper(ANSIBLE_LOCAL_TEMP=str(tmp_path / "inv" / ".state" / "ansible" / "configure-x" / "tmp"))
    other = sleeper(ANSIBLE_LOCAL_TEMP=str(tmp_path / "other" / ".state" / "ansible" / "configure-y" / "tmp"))
    reader = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)",
                               str(tmp_path / "inv" / ".state" / "ansible" / "configure-x" / "stdout")])
    try:
        time.sleep(0.2)
        started = time.monotonic()
        assert ansible.stop_leftovers(Inv(tmp_path / "inv" / ".state"), grace=0.5) == 1
        assert ours.wait(timeout=5) == -9, "it ignored SIGTERM: SIGKILL after the grace"
        assert time.monotonic() - started < 3
        assert other.poll() is None, "another inventory's process is not ours to stop"
        assert reader.poll() is None, "an operator's command naming an artefact is not a worker"
    finally:
        for proc in (ours, other, reader):
            proc.kill()
            proc.wait()


def test_nothing_left_nothing_stopped(tmp_path):
    assert ansible.stop_leftovers(Inv(tmp_path / ".state"), grace=0.1) == 0
