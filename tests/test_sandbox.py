"""The sandbox: hostile programs get no credit, stay inside their limits and leave no files."""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
from pathlib import Path

import pytest

from benchmarks.sandbox import STATUSES, Outcome, SandboxLimits, SandboxPool, run_tests

LIMITS = SandboxLimits(wall_seconds=1.0, cpu_seconds=1, memory_bytes=256 * 2**20, output_bytes=16 * 2**10)
# The worker needs a moment beyond the wall-clock limit to kill, reap and clean up.
SLACK_SECONDS = 1.5
WRONG_IDENTITY = "def f(x):\n    return -1\n"  # no test, here or in the code task, expects -1
IDENTITY_TEST = ["assert f(1) == 1"]


@pytest.fixture(scope="module")
def outside():
    """A directory that any user may write to, outside every sandbox working directory.

    World-writable, so only the sandbox's own checks stop a write, not file permissions.
    """
    path = Path(tempfile.mkdtemp(prefix="divbench-outside-"))
    path.chmod(0o777)
    yield path
    shutil.rmtree(path)


@pytest.fixture(scope="module")
def sandbox_root():
    path = Path(tempfile.mkdtemp(prefix="divbench-root-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path)


@pytest.fixture(scope="module")
def pool(sandbox_root):
    pool = SandboxPool(workers=2, directory=sandbox_root)
    yield pool
    pool.close()


def hostile_programs(outside: Path) -> dict[str, tuple[str, str]]:
    """Return {kind: (program, expected status)}; each program's test is `assert f(1) == 1`."""
    target = outside / "escaped.txt"
    return {
        "exit early with success": (WRONG_IDENTITY + "import sys\nsys.exit(0)\n", "error"),
        "os._exit with success": (WRONG_IDENTITY + "import os\nos._exit(0)\n", "crashed"),
        "SystemExit inside the test": ("def f(x):\n    raise SystemExit(0)\n", "ok"),
        "os._exit inside the test": ("def f(x):\n    import os\n    os._exit(0)\n", "crashed"),
        "swallow the assertion error": (
            WRONG_IDENTITY
            + "import atexit, builtins, os, sys\n"
            + "sys.excepthook = lambda *args: None\n"
            + "atexit.register(os._exit, 0)\n"
            + "builtins.AssertionError = type('Quiet', (Exception,), {})\n"
            + "builtins.BaseException = type('Quiet', (Exception,), {})\n",
            "ok",
        ),
        "swallow the tests in a string": (WRONG_IDENTITY + "unused = '''\n", "syntax_error"),
        "forge pass records": (
            WRONG_IDENTITY
            + "import os\n"
            + "for fd in range(3, 64):\n"
            + "    try:\n"
            + "        os.write(fd, b'0 pass 0\\n0 done\\n')\n"
            + "    except OSError:\n"
            + "        pass\n",
            "ok",
        ),
        "read the harness frame": (
            WRONG_IDENTITY + "import sys\nharness = sys._getframe(1).f_locals\n",
            "error",
        ),
        "reach a frame through a traceback": (
            WRONG_IDENTITY
            + "try:\n"
            + "    raise ValueError\n"
            + "except ValueError as error:\n"
            + "    frame = error.__traceback__.tb_frame\n",
            "error",
        ),
        "infinite loop": ("while True:\n    pass\n", "timeout"),
        "infinite loop inside the test": ("def f(x):\n    while True:\n        pass\n", "timeout"),
        "long C-level call": ("digits = pow(3, 10**8)\n", "timeout"),
        "fork bomb": ("import os\nwhile True:\n    os.fork()\n", "error"),
        "shell fork bomb": ("import os\nos.system(':(){ :|:& };:')\n", "error"),
        "memory bomb": ("blocks = []\nwhile True:\n    blocks.append(bytearray(2**26))\n", "error"),
        "output flood": ("while True:\n    print('x' * 10000)\n", "output_limit"),
        "write to an absolute path": (f"open({str(target)!r}, 'w').write('x')\n", "error"),
        "write through ..": (
            "import os\n"
            + "depth = os.getcwd().count('/')\n"
            + f"open('../' * depth + {str(target)[1:]!r}, 'w').write('x')\n",
            "error",
        ),
        "write through a symlink": (
            f"import os\nos.symlink({str(outside)!r}, 'link')\nopen('link/escaped.txt', 'w').write('x')\n",
            "error",
        ),
        "write through a directory descriptor": (
            "import os\n"
            + f"directory = os.open({str(outside)!r}, os.O_RDONLY)\n"
            + "os.open('escaped.txt', os.O_WRONLY | os.O_CREAT, dir_fd=directory)\n",
            "error",
        ),
        "open a socket": ("import socket\nsocket.socket().connect(('127.0.0.1', 9))\n", "error"),
        "call C through ctypes": ("import ctypes\nctypes.CDLL(None).system(b'true')\n", "error"),
        "kill the worker": ("import os, signal\nos.kill(os.getppid(), signal.SIGKILL)\n", "error"),
    }


# Kinds that the audit hook itself must stop, not an import error or file permissions.
BLOCKED_BY_AUDIT_HOOK = {
    "read the harness frame",
    "reach a frame through a traceback",
    "fork bomb",
    "shell fork bomb",
    "write to an absolute path",
    "write through ..",
    "write through a symlink",
    "write through a directory descriptor",
    "open a socket",
    "call C through ctypes",
    "kill the worker",
}


def test_correct_program_passes(pool):
    [outcome] = pool.run([("def f(x):\n    return x\n", ["assert f(1) == 1", "assert f(2) == 3"])], LIMITS)

    assert outcome.status == "ok"
    assert outcome.passed == (True, False)
    assert outcome.fraction_passed == 0.5


def test_hostile_programs_get_no_credit(pool, outside, sandbox_root):
    programs = hostile_programs(outside)
    assert len(programs) >= 12

    outcomes = pool.run([(program, IDENTITY_TEST) for program, _ in programs.values()], LIMITS)

    for (kind, (_, expected_status)), outcome in zip(programs.items(), outcomes):
        assert outcome.passed == (False,), kind
        assert outcome.status == expected_status, (kind, outcome.output[-300:])
        if kind in BLOCKED_BY_AUDIT_HOOK:
            assert "PermissionError: sandbox:" in outcome.output, (kind, outcome.output)
        assert outcome.seconds < LIMITS.wall_seconds + SLACK_SECONDS, kind
    assert list(outside.iterdir()) == []
    # Each worker keeps one private directory and removes every job's working directory.
    worker_roots = list(sandbox_root.iterdir())
    assert len(worker_roots) == pool.size
    for root in worker_roots:
        assert list(root.iterdir()) == []


def test_pool_serves_after_hostile_programs(pool, outside):
    pool.run([(program, IDENTITY_TEST) for program, _ in hostile_programs(outside).values()], LIMITS)

    outcomes = pool.run([("def f(x):\n    return x\n", IDENTITY_TEST)] * 4, LIMITS)

    assert [outcome.status for outcome in outcomes] == ["ok"] * 4
    assert all(outcome.passed == (True,) for outcome in outcomes)
    assert pool.replaced == 0


def test_pool_replaces_a_dead_worker(sandbox_root):
    pool = SandboxPool(workers=1, directory=sandbox_root)
    try:
        [pid] = pool.worker_pids()
        os.kill(pid, signal.SIGKILL)

        [lost] = pool.run([("def f(x):\n    return x\n", IDENTITY_TEST)], LIMITS)
        [served] = pool.run([("def f(x):\n    return x\n", IDENTITY_TEST)], LIMITS)

        assert lost == Outcome((False,), "worker_lost")
        assert served.status == "ok"
        assert served.passed == (True,)
        assert pool.replaced == 1
        assert pool.worker_pids() != [pid]
    finally:
        pool.close()


def test_program_error_fails_every_test(pool):
    [outcome] = pool.run([("def f(x):\n    return x\nraise ValueError('no')\n", IDENTITY_TEST * 3)], LIMITS)

    assert outcome.status == "error"
    assert outcome.passed == (False, False, False)
    assert "ValueError" in outcome.output


def test_tests_share_the_program_namespace(pool):
    program = "import math\ndef area(r):\n    return math.pi * r * r\n"
    tests = ["helper = area(1)", "assert abs(helper - math.pi) < 1e-12"]

    [outcome] = pool.run([(program, tests)], LIMITS)

    assert outcome.passed == (True, True)


def test_output_is_captured(pool):
    [outcome] = pool.run([("print('hello')\nimport sys\nprint('oops', file=sys.stderr)\n", [])], LIMITS)

    assert outcome.status == "ok"
    assert outcome.output == "hello\noops\n"
    assert outcome.fraction_passed == 0.0


def test_environment_is_scrubbed(pool, monkeypatch):
    monkeypatch.setenv("DIVBENCH_SECRET", "do-not-leak")
    program = "import os\nnames = sorted(os.environ)\nworkdir = os.getcwd()\n"
    tests = ["assert 'DIVBENCH_SECRET' not in names", "assert os.environ['HOME'] == workdir"]

    [outcome] = pool.run([(program, tests)], LIMITS)

    assert outcome.passed == (True, True)


def test_working_directory_is_fresh(pool):
    program = "import os\nbefore = os.listdir('.')\nopen('note.txt', 'w').write('x')\n"
    tests = ["assert before == []", "assert open('note.txt').read() == 'x'"]

    outcomes = pool.run([(program, tests)] * 3, LIMITS)

    assert all(outcome.passed == (True, True) for outcome in outcomes)


def test_run_tests_uses_shared_pool():
    outcomes = run_tests([("x = 2\n", ["assert x == 2"]), ("x = 3\n", ["assert x == 2"])])

    assert [outcome.passed for outcome in outcomes] == [(True,), (False,)]
    assert run_tests([]) == []


@pytest.mark.parametrize(
    "field, value",
    [("wall_seconds", 0), ("cpu_seconds", -1), ("memory_bytes", 0), ("output_bytes", 0), ("file_bytes", 0)],
)
def test_limits_reject_non_positive_values(field, value):
    with pytest.raises(ValueError, match=f"invalid sandbox limit {field}="):
        SandboxLimits(**{field: value})


def test_pool_rejects_zero_workers():
    with pytest.raises(ValueError, match="invalid sandbox worker count 0"):
        SandboxPool(workers=0)


def test_statuses_cover_hostile_expectations(outside):
    expected = {status for _, status in hostile_programs(outside).values()}

    assert expected <= set(STATUSES)


def test_hostile_completions_no_test_credit(outside):
    from benchmarks.tasks.coding import FORMAT_WEIGHT, CodeTask, fenced, score_batch

    task = CodeTask()
    problem = task.problems("test", 1, seed=0)[0]
    programs = [program for program, _ in hostile_programs(outside).values()]
    completions = [fenced(program.rstrip("\n")) for program in programs]

    scores = score_batch([problem] * len(completions), completions, task.limits)

    for program, score in zip(programs, scores):
        assert score.tests_passed == 0.0, program
        assert not score.all_passed, program
        assert score.reward <= FORMAT_WEIGHT, program  # at most the format term, never test credit
    assert list(outside.iterdir()) == []
