"""Run model-written programs against tests in confined processes.

Model output is untrusted, so it never runs in this process. `run_tests` hands each
(program, tests) job to a pool of worker processes (`benchmarks/sandbox_worker.py`, started with
`python -I -S`), and each worker forks one confined child per job. The worker module docstring
lists what the child is confined by. The pool replaces a worker that dies or stops responding,
and the job it was running reads as failed.

The README's security section states what is enforced and what is not.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import queue
import select
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

logger = logging.getLogger(__name__)

WORKER_SCRIPT = Path(__file__).with_name("sandbox_worker.py")
# The parent waits this much longer than a job's wall-clock limit before it gives the worker up.
# The worker needs the slack to kill the job, reap it and remove its directory.
WORKER_GRACE_SECONDS = 5.0
STATUSES = (
    "ok",
    "error",
    "syntax_error",
    "timeout",
    "output_limit",
    "crashed",
    "setup_failed",
    "worker_lost",
)


@dataclass(frozen=True)
class SandboxLimits:
    """Per-job limits. A job that passes the wall-clock or CPU limit is killed."""

    wall_seconds: float = 5.0
    cpu_seconds: int = 5
    memory_bytes: int = 512 * 2**20  # address space, so it counts mapped but unused memory too
    output_bytes: int = 64 * 2**10  # stdout and stderr together; more kills the job
    file_bytes: int = 1 * 2**20  # largest file the job may write in its working directory

    def __post_init__(self):
        for name, value in asdict(self).items():
            if not value > 0:
                raise ValueError(f"invalid sandbox limit {name}={value!r}; it must be positive")


@dataclass(frozen=True)
class Outcome:
    """The result of one job.

    `passed` contains one flag per test, true only when the test's code ran to completion. `status`
    is one of STATUSES: "ok" when the harness finished, "error" when the program raised,
    "syntax_error" when it did not compile, "timeout", "output_limit", "crashed" when the process
    ended without finishing (os._exit, a signal, a memory limit hit outside Python),
    "setup_failed" when the child could not confine itself (a harness fault, logged), and
    "worker_lost" when the worker itself failed.
    """

    passed: tuple[bool, ...]
    status: str
    output: str = ""
    seconds: float = 0.0  # wall-clock time of the job in its worker, including setup and cleanup

    @property
    def fraction_passed(self) -> float:
        """Return the share of tests that passed, 0.0 when there are none."""
        return sum(self.passed) / len(self.passed) if self.passed else 0.0


class _Worker:
    """One worker process and its line-based JSON protocol."""

    def __init__(self, directory: str | None):
        environment = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8"}
        directory = directory or os.environ.get("TMPDIR")
        if directory:
            environment["TMPDIR"] = directory
        self.process = subprocess.Popen(
            [sys.executable, "-I", "-S", str(WORKER_SCRIPT)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=environment,
            close_fds=True,
        )
        self.buffer = b""

    def request(self, job: dict, timeout: float) -> dict:
        """Send one job and wait up to `timeout` seconds for its outcome line."""
        self.process.stdin.write((json.dumps(job) + "\n").encode())
        self.process.stdin.flush()
        deadline = time.monotonic() + timeout
        fd = self.process.stdout.fileno()
        while b"\n" not in self.buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("the sandbox worker timed out before returning an outcome")
            ready, _, _ = select.select([fd], [], [], remaining)
            if ready:
                chunk = os.read(fd, 65536)
                if not chunk:
                    raise EOFError("the sandbox worker exited")
                self.buffer += chunk
        line, _, self.buffer = self.buffer.partition(b"\n")
        return json.loads(line)

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        for stream in (self.process.stdin, self.process.stdout):
            try:
                stream.close()
            except OSError:
                pass


class SandboxPool:
    """A fixed number of workers that run jobs in parallel and replace any that fail."""

    def __init__(self, workers: int = 2, directory: str | os.PathLike | None = None):
        """Start `workers` worker processes.

        Each worker makes one private directory under `directory` (default: the system's
        temporary directory) and one working directory inside it per job.
        """
        if workers < 1:
            raise ValueError(f"invalid sandbox worker count {workers}; it must be at least 1")
        self.size = workers
        self.directory = os.fspath(directory) if directory is not None else None
        self._idle: queue.Queue[_Worker] = queue.Queue()
        self._lock = threading.Lock()
        self._closed = False
        self.replaced = 0  # workers restarted after a failure, for tests and logs
        for _ in range(workers):
            self._idle.put(_Worker(self.directory))
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="sandbox")

    def run(self, jobs: Sequence[tuple[str, Sequence[str]]], limits: SandboxLimits) -> list[Outcome]:
        """Run every job and return their outcomes in order."""
        if self._closed:
            raise RuntimeError("the sandbox pool is closed")
        payloads = [_job(program, tests, limits) for program, tests in jobs]
        timeout = limits.wall_seconds + WORKER_GRACE_SECONDS
        return list(self._executor.map(lambda payload: self._run_one(payload, timeout), payloads))

    def _run_one(self, payload: dict, timeout: float) -> Outcome:
        worker = self._idle.get()
        try:
            answer = worker.request(payload, timeout)
        except (OSError, EOFError, TimeoutError, ValueError) as error:
            logger.warning("sandbox worker %d failed (%s); starting a new one", worker.process.pid, error)
            worker.close()
            with self._lock:
                self.replaced += 1
            self._idle.put(_Worker(self.directory))
            return Outcome((False,) * len(payload["tests"]), "worker_lost")
        self._idle.put(worker)
        if answer["status"] == "setup_failed":
            logger.error("the sandbox could not confine a job: %s", answer["output"].strip())
        return Outcome(tuple(answer["passed"]), answer["status"], answer["output"], answer["seconds"])

    def worker_pids(self) -> list[int]:
        """Return the process ids of the idle workers (all of them between calls to `run`)."""
        workers = [self._idle.get() for _ in range(self.size)]
        for worker in workers:
            self._idle.put(worker)
        return [worker.process.pid for worker in workers]

    def close(self) -> None:
        """Stop every worker; the pool cannot be used afterwards."""
        if self._closed:
            return
        self._closed = True
        self._executor.shutdown(wait=True)
        while not self._idle.empty():
            self._idle.get().close()


def _job(program: str, tests: Sequence[str], limits: SandboxLimits) -> dict:
    if not isinstance(program, str) or not all(isinstance(test, str) for test in tests):
        raise TypeError("a sandbox job is a program string and a sequence of test strings")
    return {"program": program, "tests": list(tests), "limits": asdict(limits)}


_shared_pool: SandboxPool | None = None
_shared_lock = threading.Lock()


def shared_pool() -> SandboxPool:
    """Return the process-wide pool, starting it on first use; it is closed at exit."""
    global _shared_pool
    with _shared_lock:
        if _shared_pool is None or _shared_pool._closed:
            _shared_pool = SandboxPool(workers=max(1, min(4, os.cpu_count() or 1)))
            atexit.register(_shared_pool.close)
        return _shared_pool


def run_tests(
    jobs: Sequence[tuple[str, Sequence[str]]], limits: SandboxLimits | None = None
) -> list[Outcome]:
    """Run each (program, tests) job in the sandbox and return one Outcome per job, in order.

    The program runs first in a fresh namespace, then each test string runs in that namespace.
    A test passes only if its code ran to completion without raising; if the program raises,
    every test fails.
    """
    if not jobs:
        return []
    return shared_pool().run(jobs, limits or SandboxLimits())
