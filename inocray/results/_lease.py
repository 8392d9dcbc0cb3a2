"""One driver per run directory: the lease in RUN_DIR/driver.lease.

    hold(run_dir, take_over, echo)   claim the lease (or one sentence naming its holder), keep
                                     its heartbeat while the driver runs, give it back at the end

The lease is a small JSON file: the owner (user@host:pid), the host, the pid, a token of its
own, when it was claimed and its heartbeat (seconds since the epoch, renewed every HEARTBEAT_S).
It is claimed atomically: locally (or on NFS) by linking a finished temporary file to the
lease's name, which fails when the name exists; on S3 by a PUT with `If-None-Match: *`, which
S3 refuses when the object exists, and renewed with `If-Match` on the ETag it last wrote, so
a driver that lost its lease finds out. A second driver is refused unless the lease is stale
(no heartbeat for STALE_S, or its process is gone from this host) or it is told to take over;
then it moves the old lease aside (locally a rename, which only one driver can make) or
replaces it conditionally on its ETag (S3), and claims it as above. Staleness compares the
heartbeat with this machine's clock: the drivers' clocks must agree to within STALE_S.
"""

from __future__ import annotations

import contextlib
import getpass
import json
import os
import socket
import threading
import time
import uuid
from pathlib import Path
from typing import Callable

from inocray.errors import InputError
from inocray.results import storage
from inocray.results._layout import LEASE
from inocray.results.storage import Location

HEARTBEAT_S = 10.0  # how often a driver renews its lease
STALE_S = 60.0  # a lease without a heartbeat for this long may be taken over


class Lost(Exception):
    """The lease is no longer this driver's (taken over, or removed)."""


def hold(run_dir: Location, take_over: bool = False, echo: Callable = print) -> contextlib.AbstractContextManager:
    """Claim `run_dir`'s lease now and return a `with` block that gives it back when it ends;
    its heartbeat runs from now on. InputError naming the holder when another live driver has
    it and `take_over` is not set."""
    lease = _Lease(storage.join(run_dir, LEASE), echo)
    lease.claim(take_over)
    return lease


class _Lease:
    def __init__(self, where: Location, echo: Callable) -> None:
        self.where, self.echo = where, echo
        self.record: dict = {}
        self.version: str | None = None  # what `where` holds when it is ours (the token; on S3 the ETag)
        self.stop = threading.Event()
        self.thread: threading.Thread | None = None

    def claim(self, take_over: bool) -> None:
        now = time.time()
        host = socket.gethostname()
        self.record = {"owner": f"{_user()}@{host}:{os.getpid()}", "host": host, "pid": os.getpid(),
                       "token": uuid.uuid4().hex, "claimed": now, "heartbeat": now}
        for _ in range(3):  # a lease that goes away while we look is claimed again
            try:
                self.version = _create(self.where, self._bytes())
                break
            except FileExistsError:
                pass
            found = _read(self.where)
            if found is None:
                continue
            old, old_version = found
            if not take_over and not stale(old):
                age = time.time() - float(old.get("heartbeat", 0))
                raise InputError(f"{_dir(self.where)} is being run by "
                                 f"{old.get('owner', '?')} (heartbeat {age:.0f} s ago); wait for it to end, or pass "
                                 f"--take-over if that driver is gone")
            if _remove(self.where, old, old_version):
                self.echo(f"taking over {_dir(self.where)} from {old.get('owner', '?')}")
        else:
            raise InputError(f"{_dir(self.where)}: could not claim its lease ({LEASE}); another driver keeps "
                             "claiming it")
        self.thread = threading.Thread(target=self._beat, name="inocray-lease", daemon=True)
        self.thread.start()

    def _bytes(self) -> bytes:
        return json.dumps(self.record).encode()

    def _beat(self) -> None:
        while not self.stop.wait(HEARTBEAT_S):
            try:
                self.renew()
            except Lost:
                self.echo(f"warning: the lease of {_dir(self.where)} was taken over; this driver's results may "
                          "be written again by the driver that took it")
                return
            except OSError:  # storage out of reach for a moment: try again at the next beat
                continue

    def renew(self) -> None:
        """Write a new heartbeat, if the lease is still ours (Lost otherwise)."""
        self.record["heartbeat"] = time.time()
        self.version = _rewrite(self.where, self._bytes(), self.record["token"], self.version)

    def __enter__(self) -> _Lease:
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        if self.thread is not None:
            self.thread.join()
        with contextlib.suppress(OSError):
            found = _read(self.where)
            if found is not None and found[0].get("token") == self.record["token"]:
                storage.delete(self.where)


def stale(record: dict) -> bool:
    """Whether a lease's driver is gone: no heartbeat for STALE_S, or (on this host) no process."""
    if time.time() - float(record.get("heartbeat", 0)) > STALE_S:
        return True
    return record.get("host") == socket.gethostname() and not _alive(int(record.get("pid", 0)))


def read(run_dir: Location) -> dict | None:
    """The lease of `run_dir` (its record), or None."""
    found = _read(storage.join(run_dir, LEASE))
    return found[0] if found else None


def _dir(where: Location) -> Location:
    return where.rsplit("/", 1)[0] if storage.is_remote(where) else Path(where).parent


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return str(os.getuid())


def _alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


# --- the atomic operations, on a local path or S3 ----------------------------------------------


def _s3(where: str):
    """(boto3 client, bucket, key) of an s3:// URI; boto3 reads the same AWS settings as pyarrow."""
    import boto3

    bucket, _, key = where.partition("://")[2].partition("/")
    return boto3.client("s3"), bucket, key


def _refused(error) -> bool:
    """An S3 error that says a condition did not hold (412), or a concurrent write won (409)."""
    return error.response.get("Error", {}).get("Code") in ("PreconditionFailed", "ConditionalRequestConflict") or \
        error.response.get("ResponseMetadata", {}).get("HTTPStatusCode") in (409, 412)


def _create(where: Location, data: bytes) -> str:
    """Write `where` only if nothing is there (FileExistsError otherwise); its version."""
    if storage.is_remote(where):
        from botocore.exceptions import ClientError

        client, bucket, key = _s3(where)
        try:
            return client.put_object(Bucket=bucket, Key=key, Body=data, IfNoneMatch="*")["ETag"]
        except ClientError as e:
            if _refused(e):
                raise FileExistsError(where) from None
            raise
    path = Path(where)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.link(tmp, path)  # atomic, also on NFS: fails if the name exists
    finally:
        tmp.unlink(missing_ok=True)
    return json.loads(data)["token"]


def _read(where: Location) -> tuple[dict, str] | None:
    """(record, version) of the lease at `where`, or None when there is none."""
    if storage.is_remote(where):
        from botocore.exceptions import ClientError

        client, bucket, key = _s3(where)
        try:
            got = client.get_object(Bucket=bucket, Key=key)
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                return None
            raise
        record, version = _parse(got["Body"].read()), got["ETag"]
    else:
        try:
            record = _parse(Path(where).read_bytes())
        except FileNotFoundError:
            return None
        version = record.get("token", "")
    return record, version


def _parse(data: bytes) -> dict:
    try:
        record = json.loads(data)
    except ValueError:
        record = None
    return record if isinstance(record, dict) else {"owner": "a damaged lease", "heartbeat": 0}


def _remove(where: Location, record: dict, version: str) -> bool:
    """Remove the lease `record` (version `version`) if it is still the one at `where`; whether
    this call removed it (another driver taking over at once may have)."""
    if storage.is_remote(where):
        from botocore.exceptions import ClientError

        client, bucket, key = _s3(where)
        try:  # the stale lease, replaced by an expired one of ours only if unchanged since read
            client.put_object(Bucket=bucket, Key=key, Body=json.dumps({"heartbeat": 0}).encode(), IfMatch=version)
            client.delete_object(Bucket=bucket, Key=key)
        except ClientError as e:
            if _refused(e) or e.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                return False
            raise
        return True
    aside = Path(where).with_name(f".{Path(where).name}.stale-{uuid.uuid4().hex}")
    try:
        os.rename(where, aside)  # only one driver can move it
    except FileNotFoundError:
        return False
    moved = _parse(aside.read_bytes())
    if moved.get("token") != record.get("token"):  # a fresh lease came between: put it back
        with contextlib.suppress(FileExistsError):
            os.link(aside, where)
        aside.unlink()
        return False
    aside.unlink()
    return True


def _rewrite(where: Location, data: bytes, token: str, version: str | None) -> str:
    """Replace the lease with `data` if it is still ours (Lost otherwise); its new version."""
    if storage.is_remote(where):
        from botocore.exceptions import ClientError

        client, bucket, key = _s3(where)
        try:
            return client.put_object(Bucket=bucket, Key=key, Body=data, IfMatch=version)["ETag"]
        except ClientError as e:
            if _refused(e) or e.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                raise Lost(where) from None
            raise
    found = _read(where)
    if found is None or found[0].get("token") != token:
        raise Lost(where)
    storage.write_atomically(where, lambda tmp: Path(tmp).write_bytes(data))
    return token
