"""Process-pool workers shared by the experiment driver and the evaluator: one torch thread each (the pool, not
torch, spreads the work over the cores), and each ends with the process that started it."""

from __future__ import annotations

import multiprocessing as mp
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor


def spawn_pool(workers: int, setup: Callable | None = None, args: tuple = ()) -> ProcessPoolExecutor:
    """A pool of ``workers`` fresh (spawned) processes, each started by ``init_worker`` and then ``setup(*args)``
    (e.g. building the state its jobs share)."""
    return ProcessPoolExecutor(workers, mp.get_context("spawn"), initializer=_start, initargs=(setup, args))


def _start(setup: Callable | None, args: tuple) -> None:
    init_worker()
    if setup is not None:
        setup(*args)


def init_worker() -> None:
    import torch

    torch.set_num_threads(1)
    threading.Thread(target=exit_with_parent, args=(os.getppid(),), daemon=True).start()


def exit_with_parent(parent: int, every_s: float = 0.5) -> None:
    """Ends this worker once the driver that started it is gone (stopped by any signal, SIGKILL included), so a
    stopped experiment leaves no worker training into folders a relaunch will use; its runs resume from their
    last checkpoint (every file is written atomically)."""
    while os.getppid() == parent:
        time.sleep(every_s)
    os._exit(1)
