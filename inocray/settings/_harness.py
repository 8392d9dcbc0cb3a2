"""Inside the sandbox: run the graded code, then each test's probes, and write what they returned.

This file is the program the sandboxed interpreter runs (`python -I -S -B -c TEXT`); importing
it does nothing. It reads its job from stdin (the code, each test's probes, a per-run token and
the process limit), and writes one line per event to stdout, each `TOKEN<TAB>JSON`:

    {"code": ...}                 the code itself raised (its exception)
    {"t": I, "values": [...]}     test I's probes returned these plain values (JSON-encoded)
    {"t": I, "exc": ...}          a probe of test I raised
    {"t": I, "unplain": TYPE}     a probe of test I returned something that is not plain data
    {"done": N}                   every test was tried

Each line also says what the code did that the grader reports as tampering: `exit` (raised
SystemExit), `skip` (raised a test framework's skip), `eq` (returned an object of its own
class that defines `__eq__`, `__ne__` or `__bool__`), `patched` (names of builtins, of this
harness or of the modules it writes with that were replaced). None of it is a verdict: the
grader (_grader.py) decides outside, from the values alone, and everything here can be forged
by the code it runs; what it reports only helps tell a hack apart.

The audit hook below is a second layer under the sandbox's isolation: it refuses sockets,
subprocesses, fork, exec, signals, ctypes and writes outside the working directory, so honest
mistakes fail fast. The code can remove it (it is in this process); the isolation holds anyway.
"""

import builtins
import json
import os
import resource
import sys

BLOCKED = ("socket.", "subprocess.", "os.system", "os.exec", "os.posix_spawn", "os.spawn", "os.fork",
           "os.forkpty", "pty.", "os.kill", "os.killpg", "signal.pthread_kill", "ctypes.", "os.startfile",
           "winreg.", "webbrowser.", "urllib.", "http.", "ftplib.", "smtplib.", "sys._current_frames")
WRITES = {"os.remove", "os.rename", "os.rmdir", "os.mkdir", "os.chmod", "os.chown", "os.link", "os.symlink",
          "os.truncate", "os.utime", "shutil.rmtree", "shutil.copyfile", "shutil.move", "os.chdir"}
NO_IMPORT = {"ctypes", "_ctypes", "_posixsubprocess", "_socket", "socket", "mmap", "_multiprocessing"}
FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC
ROOT = os.path.realpath(os.getcwd()) + os.sep
SKIPS = {"SkipTest", "Skipped", "SkipException", "Skip"}  # unittest, pytest, nose, and the like


def inside(path):
    if isinstance(path, int):
        return True  # an already open descriptor
    return os.path.realpath(os.fsdecode(path)).startswith(ROOT)


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


class Unplain(Exception):
    pass


def encode(value, depth=0):
    """Plain data as JSON (tagged where JSON has no such type); anything else raises Unplain."""
    kind = type(value)
    if depth > 60:
        raise Unplain("nested too deeply")
    if value is None or kind in (bool, int, float, str):
        return value
    if kind is bytes:
        return {"bytes": value.hex()}
    if kind is list:
        return [encode(v, depth + 1) for v in value]
    if kind in (tuple, set, frozenset):
        return {kind.__name__: [encode(v, depth + 1) for v in value]}
    if kind is dict:
        return {"dict": [[encode(k, depth + 1), encode(v, depth + 1)] for k, v in value.items()]}
    for base in (int, float, str, bytes, list, tuple, set, frozenset, dict):
        if isinstance(value, base):  # a subclass (a Counter, a namedtuple): graded on its plain content
            return encode(base(value), depth + 1)
    raise Unplain(kind.__name__)


def own_comparison(value):
    """Whether the value's class is the graded code's and decides equality or truth itself."""
    kind = type(value)
    return getattr(kind, "__module__", "") == "__main__" and any(
        name in vars(klass) for klass in kind.__mro__[:-1] for name in ("__eq__", "__ne__", "__bool__"))


def failure(e):
    name = type(e).__name__
    return {"exc": name, "msg": str(e)[:300], "exit": isinstance(e, SystemExit), "skip": name in SKIPS}


def main():
    job = json.loads(sys.stdin.read())
    token, tests = job["token"], job["tests"]
    limit = job["nproc"]
    resource.setrlimit(resource.RLIMIT_NPROC, (limit, limit))  # raises if it cannot bind: never weaker
    write, dumps, evaluate = os.write, json.dumps, builtins.eval
    watched = [(builtins, dict(vars(builtins))), (sys.modules[__name__], dict(globals())),
               (json, dict(vars(json))), (os, {"write": os.write})]

    def patched():
        return [f"{getattr(m, '__name__', '?')}.{k}" for m, before in watched
                for k in before if vars(m).get(k) is not before[k]] + [
                f"{getattr(m, '__name__', '?')}.{k}" for m, before in watched if m is builtins
                for k in set(vars(m)) - set(before)]

    def emit(record):
        record["patched"] = patched()
        try:
            line = dumps(record)
        except (TypeError, ValueError) as e:  # an int too long to print, say
            line = dumps({**{k: v for k, v in record.items() if k in ("t", "patched")}, "exc": type(e).__name__,
                          "msg": str(e)[:300], "exit": False, "skip": False})
        write(1, f"\n{token}\t{line}\n".encode())

    namespace = {"__name__": "__main__"}
    sys.addaudithook(hook)
    try:
        exec(compile(job["code"], "solution.py", "exec"), namespace)
    except BaseException as e:  # noqa: BLE001 - SystemExit included: it is reported, not obeyed
        emit({"code": True, **failure(e)})
        return
    for i, probes in enumerate(tests):
        try:
            values = [evaluate(probe, namespace) for probe in probes]
        except BaseException as e:  # noqa: BLE001
            emit({"t": i, **failure(e)})
            continue
        try:
            emit({"t": i, "values": [encode(v) for v in values], "eq": any(own_comparison(v) for v in values)})
        except Unplain as e:
            emit({"t": i, "unplain": str(e), "eq": any(own_comparison(v) for v in values)})
        except BaseException as e:  # noqa: BLE001 - an encoding that ran the code's own methods
            emit({"t": i, **failure(e)})
    emit({"done": len(tests)})


if __name__ == "__main__":
    main()
