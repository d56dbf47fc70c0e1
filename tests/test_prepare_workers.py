"""Preparation's worker processes: a killed worker and a Ctrl-C while they start, seen from outside."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

import pytest
from awkward import die_abruptly, make_many, prepare

from ganforge.data import chunks as chunks_module
from ganforge.data.prepare import PrepareError

# --- a killed worker --------------------------------------------------------------------------


def test_a_killed_worker_is_a_sentence_that_says_what_to_do(src, out, monkeypatch):
    make_many(src, 40)
    monkeypatch.setattr(chunks_module, "process_chunk", die_abruptly)
    with pytest.raises(PrepareError) as error:
        prepare(src, out, workers=2)
    message = str(error.value)
    assert "finished part is kept" in message and "same command again" in message and "--workers 1" in message
    assert isinstance(error.value.__context__, BrokenProcessPool)


def _starting_workers(pid: int) -> list[int]:
    """Pool workers of `pid` that are still importing: Python's Ctrl-C handler is set, the initializer's not yet."""
    found = []
    try:  # the kernel's own lists of children, one per thread (a worker may be started from any thread)
        entries = [Path(f"/proc/{child}") for task in Path(f"/proc/{pid}/task").iterdir()
                   for child in (task / "children").read_text().split()]
    except OSError:
        entries = [e for e in Path("/proc").iterdir() if e.name.isdigit()]
    for entry in entries:
        try:
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            if parent != pid or b"spawn_main" not in (entry / "cmdline").read_bytes():
                continue
            masks = {line.split(":")[0]: int(line.split()[1], 16)
                     for line in (entry / "status").read_text().splitlines() if line.startswith(("SigIgn", "SigCgt"))}
        except (OSError, ValueError, IndexError):
            continue  # gone meanwhile
        sigint = 1 << (signal.SIGINT - 1)
        if masks["SigCgt"] & sigint and not masks["SigIgn"] & sigint:
            found.append(int(entry.name))
    return found


# Imported by every Python process started with this folder on PYTHONPATH: in a pool worker (spawned with
# --multiprocessing-fork) it waits half a second at startup, after Python has set its Ctrl-C handler and
# before the worker's initializer runs, so the window the next test needs lasts long enough to hit.
SLOW_WORKER_START = """import sys, time
if "--multiprocessing-fork" in sys.argv:
    time.sleep(0.5)
"""


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="watches the worker processes through /proc")
def test_ctrl_c_while_workers_are_starting_exits_130_without_a_traceback(src, out, tmp_path):
    make_many(src, 40)
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(SLOW_WORKER_START)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(hook), os.environ.get("PYTHONPATH")]))}
    command = [sys.executable, "-m", "ganforge", "prepare", str(src), str(out), "-r", "8", "--workers", "2", "-q"]
    # Ctrl-C in a terminal signals the whole process group: the command and every worker.
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True, env=env)
    deadline = time.monotonic() + 60
    while not _starting_workers(process.pid) and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    own = {line.split(":")[0]: line.split()[1] for line in Path("/proc/self/status").read_text().splitlines()
           if line.startswith(("SigBlk", "SigIgn"))}  # inherited by prepare: SIGINT must be neither
    assert process.poll() is None, f"prepare finished before its workers were seen starting (this process: {own})"
    os.killpg(process.pid, signal.SIGINT)  # while a worker would still die of it
    _, err = process.communicate(timeout=60)
    err = err.decode()
    assert process.returncode == 130, err
    assert "Traceback" not in err and "BrokenProcessPool" not in err
    assert "Interrupted. The finished part is kept" in err


# --- Ctrl-C while the workers start ------------------------------------------------------------


@pytest.mark.skipif(not hasattr(signal, "pthread_sigmask"), reason="no signal masks on this system")
def test_a_ctrl_c_caught_by_another_thread_is_raised_only_once_the_workers_are_started():
    # The kernel hands a process-wide SIGINT to any thread that does not block it, such as the pool's
    # manager thread; Python then raises KeyboardInterrupt in the main thread at its next instruction.
    finished = []
    with pytest.raises(KeyboardInterrupt):
        with chunks_module._sigint_deferred():
            other = threading.Thread(target=os.kill, args=(os.getpid(), signal.SIGINT))
            other.start()
            other.join()
            time.sleep(0.05)  # time enough for the interpreter to act on the signal
            finished.append(True)
    assert finished, "the Ctrl-C interrupted the workers' start"
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    assert signal.SIGINT not in signal.pthread_sigmask(signal.SIG_BLOCK, set())


def test_without_a_ctrl_c_the_workers_start_and_nothing_is_raised():
    with chunks_module._sigint_deferred():
        pass
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
