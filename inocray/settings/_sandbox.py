"""Run untrusted Python (a model's code and its tests) in a separate, confined process.

    result = run_tests(code, ["assert add(1, 2) == 3"], timeout_s=5)
    result.status   # "passed" | "failed" | "timeout" | "error"
    result.passed   # one bool per test

Layers, outermost first:
  * `unshare -rn` where it works here: a new network namespace with no interfaces;
  * a fresh temporary directory as cwd, `python -I -B` (no user site, no PYTHON* variables,
    no bytecode writes), an environment with nothing of the host's but a minimal PATH;
  * resource limits: CPU seconds, address space, file size, and no new processes
    (RLIMIT_NPROC, which the kernel does not apply to root, hence also the next layer);
  * an audit hook, installed before the untrusted code runs, that refuses sockets,
    subprocesses, exec, fork, signals to other processes, ctypes, and any write or
    removal outside the temporary directory;
  * a wall-clock timeout that kills the whole process group.

The standard library is there, less sockets, subprocess and ctypes (so numpy, which loads
ctypes, cannot be imported: MBPP solutions need only the standard library).

This keeps a model's mistakes (an endless loop, a huge allocation, a stray file, a network
call) off the host. It is not a security boundary against code written to escape it; run
adversarial code in a container or VM.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence


@dataclass(frozen=True)
class SandboxResult:
    status: str  # "passed": every test passed; "failed": some test failed; "timeout"; "error": the code itself failed
    passed: tuple[bool, ...]  # per test; all False unless the run finished
    detail: str = ""  # the first error, or what ended the process


# Runs inside the sandbox: reads the job, installs the audit hook, then runs code and tests.
_RUNNER = r'''
import json, os, resource, sys
job = json.load(open("job.json"))
os.remove("job.json")
for name, value in job.pop("limits").items():
    try:
        resource.setrlimit(getattr(resource, name), (value, value))
    except (ValueError, OSError):
        pass  # not lowerable here (RLIMIT_NPROC binds no root); the audit hook still stands
root = os.path.realpath(os.getcwd()) + os.sep
BLOCKED = ("socket.", "subprocess.", "os.system", "os.exec", "os.posix_spawn", "os.spawn", "os.fork",
           "os.forkpty", "pty.", "os.kill", "os.killpg", "signal.pthread_kill", "ctypes.", "os.startfile",
           "winreg.", "webbrowser.", "urllib.", "http.", "ftplib.", "smtplib.", "sys._current_frames")
WRITES = {"os.remove", "os.rename", "os.rmdir", "os.mkdir", "os.chmod", "os.chown", "os.link", "os.symlink",
          "os.truncate", "os.utime", "shutil.rmtree", "shutil.copyfile", "shutil.move", "os.chdir"}
NO_IMPORT = {"ctypes", "_ctypes", "_posixsubprocess", "_socket", "socket", "mmap", "_multiprocessing"}
FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC

def inside(path):
    if isinstance(path, int):
        return True  # an already open descriptor
    p = os.path.realpath(os.fsdecode(path))
    return p.startswith(root)

def hook(event, args):
    if event.startswith(BLOCKED):
        raise PermissionError(f"sandbox: {event} is not allowed")
    if event == "import" and args[0].split(".")[0] in NO_IMPORT:
        raise PermissionError(f"sandbox: import of {args[0]} is not allowed")
    if event == "open":
        path, mode, flags = args
        writes = (mode is not None and any(c in str(mode) for c in "wax+")) or (flags & FLAGS)
        if writes and path is not None and not inside(path):
            raise PermissionError(f"sandbox: writing {path!r} is not allowed")
    elif event in WRITES:
        for path in args:
            if isinstance(path, (str, bytes, os.PathLike)) and not inside(path):
                raise PermissionError(f"sandbox: {event} on {path!r} is not allowed")

def reporter(token, out):
    def report(status, passed, detail=""):
        out.write("\n" + token + json.dumps({"status": status, "passed": passed, "detail": detail}) + "\n")
        out.flush()
    return report

report = reporter(job.pop("token"), sys.stdout)
sys.addaudithook(hook)

namespace = {"__name__": "__main__"}
try:
    exec(compile(job["code"], "solution.py", "exec"), namespace)
except BaseException as e:
    report("error", [False] * len(job["tests"]), f"{type(e).__name__}: {e}"[:500])
else:
    passed, first = [], ""
    for test in job["tests"]:
        try:
            exec(compile(test, "test.py", "exec"), namespace)
            passed.append(True)
        except BaseException as e:
            passed.append(False)
            first = first or f"{type(e).__name__}: {e}"[:500]
    report("passed" if all(passed) else "failed", passed, first)
'''


def run_tests(
    code: str,
    tests: Sequence[str],
    timeout_s: float = 10.0,
    memory_mb: int = 1024,
    file_mb: int = 16,
) -> SandboxResult:
    """Run `code`, then each test (Python statements, usually asserts) in its namespace."""
    none = tuple(False for _ in tests)
    token = secrets.token_hex(16)
    limits = {"RLIMIT_CPU": int(timeout_s) + 1, "RLIMIT_AS": memory_mb << 20, "RLIMIT_FSIZE": file_mb << 20,
              "RLIMIT_NPROC": 0, "RLIMIT_CORE": 0}
    work = Path(tempfile.mkdtemp(prefix="inocray-sandbox-"))
    try:
        (work / "runner.py").write_text(_RUNNER)
        (work / "job.json").write_text(json.dumps({"code": code, "tests": list(tests), "token": token, "limits": limits}))
        cmd = [*_netns_prefix(), sys.executable, "-I", "-B", "runner.py"]
        with open(work / "output.txt", "wb") as out:  # a file, not a pipe: RLIMIT_FSIZE bounds it
            proc = subprocess.Popen(cmd, cwd=work, env=_ENV, stdin=subprocess.DEVNULL, stdout=out,
                                    stderr=subprocess.STDOUT, start_new_session=True)
            try:
                proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                return SandboxResult("timeout", none, f"ran past {timeout_s:g} s")
            finally:
                _kill_group(proc)  # the process on timeout, and anything it left in its group
        text = (work / "output.txt").read_bytes()[-65536:].decode("utf-8", "replace")
        if token not in text:
            if proc.returncode in (-signal.SIGXCPU, -signal.SIGKILL):
                return SandboxResult("timeout", none, "ran out of CPU time")
            return SandboxResult("error", none, f"exited with code {proc.returncode}: {text[-300:].strip()}")
        result = json.loads(text.rsplit(token, 1)[1].splitlines()[0])
        return SandboxResult(result["status"], tuple(result["passed"]), result["detail"])
    finally:
        shutil.rmtree(work, ignore_errors=True)


_ENV = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": "/nonexistent"}


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    proc.wait()


_NETNS: list[str] | None = None


def _netns_prefix() -> list[str]:
    """`["unshare", "-rn"]` if an unprivileged network namespace can be made here, else []."""
    global _NETNS
    if _NETNS is None:
        unshare = shutil.which("unshare")
        ok = False
        if unshare:
            try:
                ok = subprocess.run([unshare, "-rn", "true"], capture_output=True, timeout=10).returncode == 0
            except (OSError, subprocess.TimeoutExpired):
                pass
        _NETNS = [unshare, "-rn"] if ok and unshare else []
    return _NETNS
