"""Sandbox worker: runs untrusted programs and their tests, one forked child per job.

The parent (`benchmarks.sandbox`) starts this file as `python -I -S sandbox_worker.py`, so it
imports nothing outside the standard library and has no site packages on its path. It reads one JSON job
per line on stdin and writes one JSON outcome per line on stdout.

Each job runs in a child forked from this worker. Before any untrusted line runs, the child:
- starts a new session, so the child and anything it starts form one process group;
- leaves the network namespace where the kernel allows it (root, or unprivileged user
  namespaces);
- sets resource limits: CPU seconds, address space, file size, open files, processes, no core;
- drops to the `nobody` user when the worker runs as root;
- moves into a fresh temporary working directory and clears the environment;
- redirects stdin to /dev/null and stdout and stderr to a pipe that the worker caps;
- installs an audit hook that blocks process creation, signals, sockets, ctypes, frame and
  garbage-collector introspection, and writes outside the working directory.

The worker kills the whole process group at the wall-clock limit, when the output exceeds its
cap, and after every job.

A test counts as passed only if the child writes a record for it after the test's code returned
without raising. Records carry a random per-job nonce that untrusted code cannot read without
the introspection the audit hook blocks. So exiting early (even with status 0), raising
SystemExit, calling os._exit or hiding an exception leaves no record and reads as a failure.
"""

from __future__ import annotations

import importlib
import io
import json
import os
import pwd
import resource
import selectors
import shutil
import signal
import sys
import tempfile
import time

NOBODY = "nobody"
NOBODY_ID = 65534  # the conventional id of `nobody` on Linux, used when passwd has no entry
CLONE_NEWUSER = 0x10000000
CLONE_NEWNET = 0x40000000
PATH = "/usr/local/bin:/usr/bin:/bin"
SETUP_FAILED = 70  # exit status of a child that could not confine itself (EX_SOFTWARE)
READ_CHUNK = 65536
MESSAGE_CHARS = 200  # maximum length of the error line the harness writes for one failure
REAP_POLL_SECONDS = 0.005
# Each job may open this many files at once, and its user may run this many processes (the
# limit only binds a user other than root). Process creation is blocked by the audit hook
# anyway; the process limit is the second line against a fork bomb.
MAX_OPEN_FILES = 64
MAX_PROCESSES = 64

# Audit events that untrusted code may never raise. A name that ends in "." blocks every event
# that starts with it.
BLOCKED_EVENTS = (
    "os.fork",
    "os.forkpty",
    "os.posix_spawn",
    "os.spawn",
    "os.exec",
    "os.system",
    "os.kill",
    "os.killpg",
    "signal.pthread_kill",
    "subprocess.Popen",
    "pty.spawn",
    "socket.",
    "ctypes.",
    "mmap.__new__",
    "resource.setrlimit",
    "resource.prlimit",
    "sys._getframe",
    "sys._current_frames",
    "sys.settrace",
    "sys.setprofile",
    "gc.get_objects",
    "gc.get_referrers",
    "gc.get_referents",
    "os.symlink",
    "os.link",
    "os.chown",
    "os.chroot",
)
# Attribute reads that lead from an object to a frame, and so to the harness's locals.
BLOCKED_ATTRIBUTES = frozenset({"tb_frame", "gi_frame", "cr_frame", "ag_frame", "f_back"})
# Audit events whose first argument is a path that must lie inside the working directory.
PATH_EVENTS = frozenset(
    {
        "os.remove",
        "os.rename",
        "os.rmdir",
        "os.mkdir",
        "os.chmod",
        "os.truncate",
        "os.utime",
        "os.chdir",
        "shutil.rmtree",
        "shutil.move",
        "shutil.copyfile",
        "shutil.copytree",
    }
)
WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC
BLOCKED_READ_ROOTS = ("/proc", "/sys", "/dev/mem", "/dev/kmem", "/dev/port")
BLOCKED_MODULES = frozenset({"ctypes", "_ctypes", "cffi"})


# Standard-library modules imported before any job, so every child has them at no cost, even
# when it runs as `nobody` and cannot read an interpreter installed under a private home.
# `socket` is among them so that the audit hook, not a failed import, is what stops a socket.
PRELOADED_MODULES = (
    "array",
    "bisect",
    "collections",
    "copy",
    "dataclasses",
    "datetime",
    "decimal",
    "fractions",
    "functools",
    "hashlib",
    "heapq",
    "itertools",
    "math",
    "operator",
    "random",
    "re",
    "socket",
    "statistics",
    "string",
    "typing",
)


def main() -> None:
    for name in PRELOADED_MODULES:
        importlib.import_module(name)
    workers_root = tempfile.mkdtemp(prefix="divbench-sandbox-")
    # Others may pass through (but not list) the root, so a child that dropped to `nobody` can
    # enter its own working directory.
    os.chmod(workers_root, 0o711)
    try:
        for line in sys.stdin:
            if not line.strip():
                continue
            outcome = run_job(json.loads(line), workers_root)
            sys.stdout.write(json.dumps(outcome) + "\n")
            sys.stdout.flush()
    finally:
        shutil.rmtree(workers_root, ignore_errors=True)


def run_job(job: dict, workers_root: str) -> dict:
    """Run one job in a forked child and return its outcome as a JSON-ready dict."""
    started = time.monotonic()
    nonce = os.urandom(16).hex()
    workdir = tempfile.mkdtemp(dir=workers_root)
    result_read, result_write = os.pipe()
    output_read, output_write = os.pipe()
    # Nothing buffered may be duplicated into the child.
    sys.stdout.flush()
    pid = os.fork()
    if pid == 0:  # child: never returns
        os.close(result_read)
        os.close(output_read)
        _run_child(job, nonce, workdir, result_write, output_write)
    os.close(result_write)
    os.close(output_write)
    try:
        records, output, status = _collect(pid, job["limits"], result_read, output_read)
    finally:
        os.close(result_read)
        os.close(output_read)
        _kill_group(pid)
        shutil.rmtree(workdir, ignore_errors=True)
    outcome = _outcome(records, nonce, len(job["tests"]), output, status)
    outcome["seconds"] = time.monotonic() - started
    return outcome


def _collect(pid: int, limits: dict, result_read: int, output_read: int):
    """Read the child's records and output until it exits, times out or floods its output."""
    deadline = time.monotonic() + limits["wall_seconds"]
    max_output = limits["output_bytes"]
    buffers = {result_read: bytearray(), output_read: bytearray()}
    selector = selectors.DefaultSelector()
    for fd in buffers:
        selector.register(fd, selectors.EVENT_READ)
    status = None
    while selector.get_map():
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            status = "timeout"
            break
        for key, _ in selector.select(remaining):
            chunk = os.read(key.fd, READ_CHUNK)
            if not chunk:
                selector.unregister(key.fd)
                continue
            buffers[key.fd] += chunk
        if len(buffers[output_read]) > max_output or len(buffers[result_read]) > max_output:
            status = "output_limit"
            break
    selector.close()
    if status is None:
        status = _reap(pid, deadline)
    else:
        _kill_group(pid)
        _reap(pid, time.monotonic() + 1.0)
    output = bytes(buffers[output_read][:max_output]).decode("utf-8", "replace")
    records = bytes(buffers[result_read]).decode("utf-8", "replace").splitlines()
    return records, output, status


def _reap(pid: int, deadline: float) -> str | None:
    """Wait for the child until `deadline`.

    Returns "timeout" if it had to be killed, "setup_failed" if it could not confine itself,
    and None otherwise.
    """
    while time.monotonic() < deadline:
        done, wait_status = os.waitpid(pid, os.WNOHANG)
        if done:
            if os.WIFEXITED(wait_status) and os.WEXITSTATUS(wait_status) == SETUP_FAILED:
                return "setup_failed"
            return None
        time.sleep(REAP_POLL_SECONDS)
    _kill_group(pid)
    os.waitpid(pid, 0)
    return "timeout"


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _outcome(records: list[str], nonce: str, test_count: int, output: str, status: str | None) -> dict:
    """Turn the child's records into per-test results; only records with the nonce count."""
    passed = [False] * test_count
    program_status = None
    finished = False
    for record in records:
        fields = record.split(" ")
        if len(fields) < 2 or fields[0] != nonce:
            continue
        kind = fields[1]
        if kind == "pass" and len(fields) == 3 and fields[2].isdigit() and int(fields[2]) < test_count:
            passed[int(fields[2])] = True
        elif kind == "program" and len(fields) >= 3:
            program_status = fields[2]
        elif kind == "done":
            finished = True
    if status is None:
        if program_status not in (None, "ok"):
            status = "error" if program_status == "error" else "syntax_error"
        else:
            status = "ok" if finished else "crashed"
    return {"passed": passed, "status": status, "output": output}


# Child side


def _run_child(job: dict, nonce: str, workdir: str, result_fd: int, output_fd: int) -> None:
    """Confine this process, run the program and its tests, write records, and exit.

    The child must never return into the worker's loop, whatever the untrusted code did to
    builtins, so every path ends in os._exit.
    """
    exit_now = os._exit
    try:
        _confine(job["limits"], workdir, output_fd, result_fd)
        _install_audit_hook(os.path.realpath(workdir))
    except BaseException as error:  # noqa: BLE001 - report any setup failure and stop
        os.write(2, f"sandbox setup failed: {error!r}\n".encode())
        exit_now(SETUP_FAILED)
    try:
        _run_tests(job["program"], job["tests"], nonce, result_fd)
    finally:
        exit_now(1)


def _confine(limits: dict, workdir: str, output_fd: int, result_fd: int) -> None:
    os.setsid()
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.dup2(output_fd, 1)
    os.dup2(output_fd, 2)
    # Unbuffered, so that output written before an os._exit or a kill still reaches the worker.
    sys.stdout = io.TextIOWrapper(io.FileIO(1, "w", closefd=False), write_through=True)
    sys.stderr = io.TextIOWrapper(io.FileIO(2, "w", closefd=False), write_through=True)
    # Keep only stdin, stdout, stderr and the record pipe.
    for fd in range(3, max(null, output_fd, result_fd) + 1):
        if fd != result_fd:
            _close_quietly(fd)
    _isolate_network()
    _set_limits(limits)
    if os.geteuid() == 0:
        try:
            nobody = pwd.getpwnam(NOBODY)
            uid, gid = nobody.pw_uid, nobody.pw_gid
        except KeyError:  # no such entry, as in some minimal containers
            uid = gid = NOBODY_ID
        os.chown(workdir, uid, gid)
        os.setgroups([])
        os.setgid(gid)
        os.setuid(uid)
    os.chdir(workdir)
    os.environ.clear()
    os.environ.update({"PATH": PATH, "HOME": workdir, "TMPDIR": workdir, "LANG": "C.UTF-8"})
    tempfile.tempdir = workdir


def _close_quietly(fd: int) -> None:
    try:
        os.close(fd)
    except OSError:
        pass


def _isolate_network() -> None:
    """Move into a new, empty network namespace if the kernel allows it; otherwise do nothing.

    Root may create one directly. Other users need an unprivileged user namespace first, which
    some kernels disable. ctypes is removed from sys.modules afterwards so that untrusted code
    cannot import the already loaded module without the audit hook seeing it.
    """
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    flags = CLONE_NEWNET if os.geteuid() == 0 else CLONE_NEWUSER | CLONE_NEWNET
    libc.unshare(flags)
    for name in BLOCKED_MODULES:
        sys.modules.pop(name, None)


def _set_limits(limits: dict) -> None:
    cpu = max(1, int(limits["cpu_seconds"]))
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
    resource.setrlimit(resource.RLIMIT_AS, (limits["memory_bytes"], limits["memory_bytes"]))
    resource.setrlimit(resource.RLIMIT_FSIZE, (limits["file_bytes"], limits["file_bytes"]))
    resource.setrlimit(resource.RLIMIT_NOFILE, (MAX_OPEN_FILES, MAX_OPEN_FILES))
    resource.setrlimit(resource.RLIMIT_NPROC, (MAX_PROCESSES, MAX_PROCESSES))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def _install_audit_hook(workdir: str) -> None:
    """Block the audit events that would let untrusted code escape or forge records."""
    realpath = os.path.realpath
    fspath, fsdecode, is_directory = os.fspath, os.fsdecode, os.path.isdir
    blocked_prefixes = tuple(name for name in BLOCKED_EVENTS if name.endswith("."))
    blocked_names = frozenset(name for name in BLOCKED_EVENTS if not name.endswith("."))
    inside_prefix = workdir + os.sep

    def resolve(path) -> str:
        return realpath(fsdecode(fspath(path)))

    def inside(path) -> bool:
        if isinstance(path, int):  # an already open descriptor
            return True
        resolved = resolve(path)
        return resolved == workdir or resolved.startswith(inside_prefix)

    def readable(path) -> bool:
        if isinstance(path, int):
            return True
        resolved = resolve(path)
        # An open directory outside could serve as the dir_fd of a later relative open, which
        # the "open" audit event does not report.
        if is_directory(resolved) and not inside(resolved):
            return False
        return not any(resolved == root or resolved.startswith(root + "/") for root in BLOCKED_READ_ROOTS)

    def hook(event: str, args: tuple) -> None:
        if event in blocked_names or event.startswith(blocked_prefixes):
            raise PermissionError(f"sandbox: {event} is not allowed")
        if event == "object.__getattr__" and args[1] in BLOCKED_ATTRIBUTES:
            raise PermissionError(f"sandbox: reading {args[1]} is not allowed")
        if event == "import" and args[0].partition(".")[0] in BLOCKED_MODULES:
            raise PermissionError(f"sandbox: importing {args[0]} is not allowed")
        if event == "open":
            path, mode, flags = args
            writes = (flags or 0) & WRITE_FLAGS or any(c in (mode or "") for c in "wax+")
            if writes and not inside(path):
                raise PermissionError(f"sandbox: writing outside the working directory: {path!r}")
            if not readable(path):
                raise PermissionError(f"sandbox: reading {path!r} is not allowed")
        if event in PATH_EVENTS:
            for path in args[:2] if event in ("os.rename", "shutil.move", "shutil.copyfile", "shutil.copytree") else args[:1]:
                if path is not None and not inside(path):
                    raise PermissionError(f"sandbox: {event} outside the working directory: {path!r}")

    sys.addaudithook(hook)


def _run_tests(program: str, tests: list, nonce: str, result_fd: int) -> None:
    """Run the program and then each test in one namespace, writing a record after each success.

    Every function used after the untrusted program starts is bound to a local first, so the
    program cannot replace what the harness calls.
    """
    write, exit_now, compile_source, execute = os.write, os._exit, compile, exec
    # Bound here because the program may rebind builtins.BaseException, which would make a
    # later `except BaseException` miss the real exceptions.
    any_exception = BaseException
    count = len(tests)

    def record(text: str) -> None:
        write(result_fd, (nonce + " " + text + "\n").encode())

    namespace = {"__name__": "__main__", "__builtins__": __builtins__}
    try:
        code = compile_source(program, "<program>", "exec")
    except any_exception:  # a SyntaxError, or a ValueError for a null byte
        record("program syntax")
        exit_now(0)
    try:
        execute(code, namespace)
    except any_exception as error:  # SystemExit and KeyboardInterrupt count as errors too
        write(2, f"program raised {type(error).__name__}: {error}"[:MESSAGE_CHARS].encode() + b"\n")
        record("program error")
        exit_now(0)
    record("program ok")
    index = 0
    while index < count:
        try:
            execute(compile_source(tests[index], f"<test {index}>", "exec"), namespace)
        except any_exception as error:
            write(2, f"test {index} failed: {type(error).__name__}: {error}"[:MESSAGE_CHARS].encode() + b"\n")
        else:
            record(f"pass {index}")
        index += 1
    record("done")
    exit_now(0)


if __name__ == "__main__":
    main()
