"""The sandbox runs a model's code: right code passes, anything harmful fails fast, the host is untouched."""

import os

import pytest

from inocray.settings._sandbox import _netns_prefix, run_tests

TESTS = ["assert add(1, 2) == 3", "assert add(-1, 1) == 0"]


def test_correct_code_passes_and_wrong_code_fails():
    ok = run_tests("def add(a, b):\n    return a + b", TESTS)
    assert ok.status == "passed" and ok.passed == (True, True)
    hack = run_tests("def add(a, b):\n    return 3", TESTS)
    assert hack.status == "failed" and hack.passed == (True, False)


def test_code_may_use_its_own_directory():
    code = "open('scratch.txt', 'w').write('x')\ndef add(a, b):\n    return a + b + len(open('scratch.txt').read()) - 1"
    assert run_tests(code, TESTS).status == "passed"


@pytest.mark.parametrize(
    "code",
    [
        "import socket\nsocket.socket().connect(('127.0.0.1', 9))",
        "import urllib.request\nurllib.request.urlopen('http://127.0.0.1:9')",
        "import subprocess\nsubprocess.run(['true'])",
        "import os\nos.system('true')",
        "import os\nos.fork()",
        "import os\nos.execv('/bin/true', ['true'])",
        "import os\nos.kill(os.getppid(), 9)",
        "import ctypes",
        "import module_that_does_not_exist",
        "import sys\nsys.exit(0)",
        "import os\nos._exit(0)",
        "raise SystemExit(3)",
    ],
)
def test_forbidden_or_broken_code_is_a_failure(code):
    result = run_tests(code + "\ndef add(a, b):\n    return a + b", TESTS, timeout_s=5)
    assert result.status == "error" and result.passed == (False, False)


def test_no_write_or_removal_outside_its_directory(tmp_path):
    target, keep = tmp_path / "written.txt", tmp_path / "keep.txt"
    keep.write_text("keep")
    for code in (f"open({str(target)!r}, 'w').write('x')",
                 f"import os\nos.close(os.open({str(target)!r}, os.O_CREAT | os.O_WRONLY))",
                 f"import pathlib\npathlib.Path({str(target)!r}).touch()",
                 f"import os\nos.remove({str(keep)!r})",
                 f"import shutil\nshutil.rmtree({str(tmp_path)!r})"):
        assert run_tests(code, TESTS).status == "error", code
    assert not target.exists() and keep.read_text() == "keep"


def test_endless_loop_is_stopped_by_the_timeout():
    result = run_tests("while True:\n    pass", TESTS, timeout_s=2)
    assert result.status == "timeout" and result.passed == (False, False)
    # the wall-clock timeout, or on a busy machine the CPU limit set one second above it
    assert result.detail in ("ran past 2 s", "ran out of CPU time"), result.detail


def test_unbounded_allocation_is_stopped_by_the_memory_limit():
    result = run_tests("x = []\nwhile True:\n    x.append(' ' * 10**7)", TESTS, timeout_s=60, memory_mb=512)
    assert result.status == "error" and not any(result.passed)
    assert result.detail.startswith("MemoryError"), result.detail


def test_a_failing_test_does_not_stop_the_others():
    result = run_tests("def add(a, b):\n    return a + b", ["assert add(1, 1) == 3", *TESTS])
    assert result.passed == (False, True, True) and "AssertionError" in result.detail


def test_host_environment_is_not_visible(monkeypatch):
    monkeypatch.setenv("INOCRAY_SECRET", "hunter2")
    code = "import os\nassert 'INOCRAY_SECRET' not in os.environ\ndef add(a, b):\n    return a + b"
    assert run_tests(code, TESTS).status == "passed"


@pytest.mark.skipif(not _netns_prefix(), reason="no unprivileged network namespace here")
def test_network_namespace_has_no_route_out():
    import subprocess
    import sys

    probe = "import socket\ns = socket.socket()\ns.settimeout(1)\ns.connect(('1.1.1.1', 53))"
    proc = subprocess.run([*_netns_prefix(), sys.executable, "-c", probe], capture_output=True, text=True)
    assert proc.returncode != 0 and "unreachable" in proc.stderr.lower()


def test_leaves_no_temporary_directory():
    import tempfile

    before = {p for p in os.listdir(tempfile.gettempdir()) if p.startswith("inocray-sandbox-")}
    run_tests("def add(a, b):\n    return a + b", TESTS)
    after = {p for p in os.listdir(tempfile.gettempdir()) if p.startswith("inocray-sandbox-")}
    assert after <= before
