"""A stopped experiment driver takes its pool workers with it (they would otherwise train on unsupervised)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

DRIVER = """
import sys, time
from concurrent.futures import ProcessPoolExecutor
import multiprocessing as mp
from policies.workers import init_worker

def work(path):
    import os, time
    open(path, "w").write(str(os.getpid()))
    time.sleep(120)

if __name__ == "__main__":
    with ProcessPoolExecutor(1, mp_context=mp.get_context("spawn"), initializer=init_worker) as pool:
        pool.submit(work, sys.argv[1]).result()
"""


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/status").is_file() and "zombie" not in Path(f"/proc/{pid}/status").read_text()


def test_workers_exit_when_the_driver_is_killed(tmp_path):
    pid_file = tmp_path / "worker.pid"
    script = tmp_path / "driver.py"
    script.write_text(DRIVER, encoding="utf-8")
    driver = subprocess.Popen([sys.executable, str(script), str(pid_file)], cwd=Path(__file__).parents[2])
    worker = None
    try:
        deadline = time.monotonic() + 120
        while not (pid_file.is_file() and pid_file.read_text()):
            assert driver.poll() is None and time.monotonic() < deadline, "the worker never started"
            time.sleep(0.2)
        worker = int(pid_file.read_text())
        assert alive(worker)
        driver.send_signal(signal.SIGKILL)  # no handler can run: the worker must notice by itself
        driver.wait(10)
        deadline = time.monotonic() + 10
        while alive(worker) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not alive(worker), "the worker outlived its driver"
    finally:
        driver.kill()
        if worker is not None and alive(worker):  # a failed check leaves no stray process behind
            os.kill(worker, signal.SIGKILL)
