"""Where a run directory lives: a local (or NFS) path, or an s3:// URI.

A location is a local path (a `Path`) or a URI (a `str`, "s3://bucket/prefix"). Local
locations get the plain file operations, with no copies. A URI goes through the pyarrow
filesystem that `pyarrow.fs.FileSystem.from_uri` opens, so the standard AWS settings apply:
credentials (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN, ~/.aws, an
instance role), AWS_DEFAULT_REGION, and AWS_ENDPOINT_URL_S3 or AWS_ENDPOINT_URL for an
S3-compatible server.

An S3 object appears whole or not at all when its upload completes, so a file is written
there with one upload of its finished bytes, where a local file is written to a temporary
name and renamed. What must be a local file (DeepSpeed's state, a model an engine loads, the
plots of an analysis) is made in a staging directory on this machine's disk (`staging`) and
copied to or from the URI.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Callable, Iterator, Union

from inocray.errors import InputError

Location = Union[Path, str]  # a local path, or a URI

SCHEMES = ("s3",)
_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:/")
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")  # S3's rule for bucket names


def is_remote(location: Location | os.PathLike) -> bool:
    return isinstance(location, str) and bool(_URI.match(location))


def location(text: str | os.PathLike) -> Location:
    """A run directory as given on the command line: a URI checked for form, or a local path."""
    if not is_remote(str(text)):
        if Path(text).is_file():
            raise InputError(f"run directory {str(text)!r} is not a directory (it is a file)")
        return Path(text)
    uri = str(text)
    scheme, _, rest = uri.partition("://")
    bucket, _, key = rest.partition("/")
    key = key.rstrip("/")
    if scheme not in SCHEMES:
        raise InputError(f"{uri!r} is not a run directory inocray can use: give a local path or s3://BUCKET/PREFIX")
    parts = key.split("/") if key else []
    if not _BUCKET.match(bucket) or any(c in uri for c in "?#@\\") or any(p in ("", ".", "..") for p in parts):
        raise InputError(f"{uri!r} is not a well-formed s3://BUCKET/PREFIX (lower-case bucket name, "
                         "no empty, '.' or '..' parts, no query or credentials: those come from the environment)")
    return f"{scheme}://{bucket}" + (f"/{key}" if key else "")


def resolve(where: Location | os.PathLike) -> Location:
    """An absolute local path, or the URI in its checked form."""
    return location(where) if is_remote(str(where)) else Path(where).resolve()


def join(where: Location | os.PathLike, *parts: str) -> Location:
    if is_remote(where):
        return "/".join([str(where).rstrip("/"), *parts])
    return Path(where).joinpath(*parts)


def filesystem(where: Location | os.PathLike):
    """(pyarrow filesystem, path on it) of a location; (None, the path) for a local one, which
    pyarrow's readers take as the local file system."""
    if not is_remote(where):
        return None, str(where)
    scheme, _, path = str(where).partition("://")
    return _open(scheme, path.partition("/")[0], tuple(os.environ.get(k) for k in _AWS_SETTINGS)), path


_AWS_SETTINGS = ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
                 "AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_DEFAULT_REGION", "AWS_REGION")


@functools.lru_cache(maxsize=8)
def _open(scheme: str, bucket: str, settings: tuple):
    """One client per bucket (credentials from an instance role are fetched once, not per file);
    `settings`, the AWS variables, only make a changed environment open a new one."""
    import pyarrow.fs as pafs

    # Delayed open: a file smaller than one upload part goes up in a single PUT when closed.
    return pafs.FileSystem.from_uri(f"{scheme}://{bucket}?allow_delayed_open=true")[0]


def check_reachable(where: Location) -> None:
    """InputError in one sentence when the bucket of a URI cannot be reached or does not exist."""
    if not is_remote(where):
        return
    bucket = str(where).partition("://")[2].partition("/")[0]
    try:
        fs, path = filesystem(where)
        found = fs.get_file_info(path.partition("/")[0]).type.name != "NotFound"
    except OSError as e:
        reason = str(e).split(";")[0].rstrip(".")
        raise InputError(f"cannot reach {where} (check the AWS endpoint and credentials): {reason}") from None
    if not found:
        raise InputError(f"{where}: there is no bucket {bucket!r} (create it first)")


def kind(where: Location) -> str:
    """"File", "Directory" or "NotFound" (a URI is a directory when objects lie under it)."""
    if not is_remote(where):
        path = Path(where)
        return "File" if path.is_file() else "Directory" if path.is_dir() else "NotFound"
    fs, path = filesystem(where)
    return fs.get_file_info(path).type.name


def exists(where: Location) -> bool:
    return kind(where) != "NotFound"


def is_file(where: Location) -> bool:
    return kind(where) == "File"


def names(where: Location, of: str = "File", suffix: str = "") -> list[str]:
    """Sorted names of the entries of kind `of` directly in directory `where` ending with `suffix`."""
    if not is_remote(where):
        root = Path(where)
        return sorted(p.name for p in root.glob(f"*{suffix}") if kind(p) == of) if root.is_dir() else []
    import pyarrow.fs as pafs

    fs, path = filesystem(where)
    infos = fs.get_file_info(pafs.FileSelector(path, allow_not_found=True))
    return sorted(i.base_name for i in infos if i.type.name == of and i.base_name.endswith(suffix))


def read_bytes(where: Location) -> bytes:
    if not is_remote(where):
        return Path(where).read_bytes()
    fs, path = filesystem(where)
    with fs.open_input_stream(path) as f:
        return f.read()


def make_dir(where: Location) -> None:
    """A local directory and its parents; nothing for a URI (S3 has no directories)."""
    if not is_remote(where):
        Path(where).mkdir(parents=True, exist_ok=True)


def write_atomically(where: Location | os.PathLike, write: Callable[[str], None]) -> Location:
    """Call write(temporary local path), then put the file at `where` whole.

    Locally the temporary file sits beside `where` and is renamed into place, the file and its
    directory flushed to the disk before the rename and the directory again after it, so that a
    power loss leaves the old file or the new one whole; for a URI it is uploaded in one piece.
    A reader sees the old file or the new one, never half of one; a failed write leaves nothing
    behind.
    """
    remote = is_remote(where)
    path = where if remote else Path(where)
    fd, tmp = tempfile.mkstemp(dir=None if remote else path.parent, prefix=f".{os.path.basename(str(where))}.",
                               suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        if remote:
            fs, key = filesystem(where)
            data = Path(tmp).read_bytes()
            with fs.open_output_stream(key) as f:  # the finished bytes at once: the object appears whole
                f.write(data)
        else:
            os.chmod(tmp, 0o644)  # mkstemp makes it private; a result is for everyone to read
            _sync(tmp)
            _sync(path.parent)  # the temporary file's entry, before a rename that depends on it
            os.replace(tmp, path)
            _sync(path.parent)  # the rename itself: after a power loss, the new file or the old one
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def _sync(path: Path | str) -> None:
    """Flush a local file's or directory's data and entry to the disk (fsync)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def append_text(where: Location, text: str) -> None:
    """Add `text` at the end of a file (a log); for a URI the whole file is uploaded again."""
    if not is_remote(where):
        Path(where).parent.mkdir(parents=True, exist_ok=True)
        with open(where, "a") as f:
            f.write(text)
        return
    old = read_bytes(where) if is_file(where) else b""
    write_atomically(where, lambda tmp: Path(tmp).write_bytes(old + text.encode()))


def delete(where: Location) -> None:
    """Remove a file or a directory tree; nothing if there is none."""
    found = kind(where)
    if not is_remote(where):
        if found == "Directory":
            shutil.rmtree(where, ignore_errors=True)
        elif found == "File":
            Path(where).unlink()
        return
    fs, path = filesystem(where)
    if found == "Directory":
        fs.delete_dir(path)
    elif found == "File":
        fs.delete_file(path)


def staging(where: Location, purpose: str = "stage") -> Path:
    """The local directory that stands in for `where`: the path itself when it is local, or a
    directory under this machine's temporary directory named after the URI, one tree per
    `purpose` ("stage": what a trial writes before uploading it; "view": working copies;
    "models": downloaded models and adapters)."""
    if not is_remote(where):
        return Path(where)
    scheme, _, path = str(where).partition("://")
    return Path(tempfile.gettempdir()) / f"inocray-{os.getuid()}" / purpose / scheme / path


def upload(local_dir: Path, where: str, last: str = "", replace: bool = True) -> None:
    """Copy the files under `local_dir` to the same places under URI `where`, file `last` (a
    marker of completeness) last; `replace` deletes what was under `where` first."""
    import pyarrow.fs as pafs

    if not is_remote(where):
        raise ValueError(f"{where} is local: write there directly")
    if replace:
        delete(where)  # a retried trial's files replace the old ones, none left over
    fs, path = filesystem(where)
    files = sorted((p for p in Path(local_dir).rglob("*") if p.is_file()), key=lambda p: (p.name == last, p))
    for file in files:
        pafs.copy_files(str(file), f"{path}/{file.relative_to(local_dir).as_posix()}",
                        source_filesystem=pafs.LocalFileSystem(), destination_filesystem=fs)


def download(where: Location, local_dir: Path) -> None:
    """Replace `local_dir` by a copy of directory `where`."""
    import pyarrow.fs as pafs

    if not is_remote(where):
        raise ValueError(f"{where} is local: read it there directly")
    fs, path = filesystem(where)
    shutil.rmtree(local_dir, ignore_errors=True)
    local_dir.mkdir(parents=True, exist_ok=True)
    if fs.get_file_info(path).type.name == "Directory":
        pafs.copy_files(path, str(local_dir), source_filesystem=fs, destination_filesystem=pafs.LocalFileSystem())


def local_copy(where: str) -> str:
    """A local directory holding the model or adapter at `where` (itself when local).

    A URI's files are downloaded once per version: the cache key covers each file's size and
    modification time, so a retried trial that rewrote its adapter gets a fresh copy.
    """
    if not is_remote(where):
        return where
    import pyarrow.fs as pafs

    fs, path = filesystem(where)
    files = [i for i in fs.get_file_info(pafs.FileSelector(path, recursive=True)) if i.type.name == "File"]
    if not files:
        raise FileNotFoundError(f"{where} holds no files")
    stamp = "".join(sorted(f"{i.path}:{i.size}:{i.mtime_ns}\n" for i in files))
    key = hashlib.sha256(f"{where}\n{stamp}".encode()).hexdigest()[:20]
    target = staging(where, "models").parent / f"{Path(path).name}.{key}"
    if not target.is_dir():
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}."))
        download(where, tmp)
        with contextlib.suppress(OSError):  # another process may have made it first
            os.replace(tmp, target)
        shutil.rmtree(tmp, ignore_errors=True)
    return str(target)


@contextlib.contextmanager
def working_copy(where: Location, fetch: tuple[str, ...]) -> Iterator[Path]:
    """A local directory standing in for run directory `where` for code that reads and writes
    local files (the analysis, its plots, the report).

    For a URI it is a fresh temporary directory (named as the run directory) holding the
    `fetch`ed files and directories; every file made or changed in the block is uploaded when
    the block ends without an error, and the directory is then deleted. A local run directory
    is used as it is.
    """
    if not is_remote(where):
        yield Path(where)
        return
    root = staging(where, "view").parent
    root.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(dir=root, prefix=".copy-"))
    local = scratch / Path(str(where).partition("://")[2]).name
    try:
        local.mkdir()
        fs, path = filesystem(where)
        for name in fetch:
            kind = fs.get_file_info(f"{path}/{name}").type.name
            if kind == "Directory":
                download(join(where, name), local / name)
            elif kind == "File":
                (local / name).write_bytes(read_bytes(join(where, name)))
        before = _stamps(local)
        yield local
        for rel, stamp in _stamps(local).items():
            if before.get(rel) != stamp:
                write_atomically(join(where, *rel.split("/")),
                                 lambda tmp, rel=rel: shutil.copyfile(local / rel, tmp))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _stamps(root: Path) -> dict[str, tuple[int, int]]:
    return {p.relative_to(root).as_posix(): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in root.rglob("*") if p.is_file()}


def shown(where: Location, local_file: Path | str) -> str:
    """How to name a file at the top of `working_copy(where)` to the user: where it went."""
    return str(join(where, Path(local_file).name)) if is_remote(where) else str(local_file)
