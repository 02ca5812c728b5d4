"""Where a shard folder lives: a local path, or a URL read and written through fsspec.

Only the schemes below are taken. Anything else (`pipe:`, which WebDataset would run as a shell
command, `ftp:`, ...) is refused before anything is opened. Credentials are each back-end's own
business: its environment variables and files, never ptgen's flags, and never printed. A
back-end's endpoint comes from its own configuration too (for S3 the standard
`AWS_ENDPOINT_URL`), so an S3-compatible store needs no ptgen flag.

A folder's files are named relative to it, and `Location.child` refuses any name that would
leave it: a `dataset.json` or `_info.json` read from one prefix never sends the reader elsewhere.
"""

from __future__ import annotations

import contextlib
import fnmatch
import os
import re
import urllib.error
import urllib.request
from pathlib import Path
from typing import BinaryIO, Iterator

from .cli import InputError
from .outputs import atomic_path, check_output_dir

# scheme -> the pip extra that installs its fsspec back-end (None: ptgen's own dependencies carry it).
SCHEMES = {"s3": "s3", "gs": "gcs", "http": "http", "https": "http", "hf": None, "file": None}
WRITABLE = ("s3", "gs", "hf", "file")
# Where each back-end looks for credentials, for the one line a missing one costs.
CREDENTIALS = {
    "s3": "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, the profile AWS_PROFILE names in ~/.aws/credentials "
          "or ~/.aws/config, or the machine's instance role",
    "gs": "GOOGLE_APPLICATION_CREDENTIALS, gcloud's application-default login, or the machine's service account",
    "hf": "HF_TOKEN, or the token `hf auth login` stores",
}
# Read from an object store a block at a time, the next block fetched while the current one is
# parsed: a stream's request latency hides behind its decoding, and an open shard holds two blocks.
BLOCK_BYTES = 8 << 20
_CREDENTIAL_ERRORS = ("NoCredentialsError", "PartialCredentialsError", "CredentialRetrievalError",
                      "DefaultCredentialsError", "RefreshError", "LocalTokenNotFoundError")
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*):")


def scheme_of(text: str) -> str:
    """'s3' for 's3://b/p', '' for a plain path (a Windows drive letter is not a scheme)."""
    m = _SCHEME.match(text)
    return m[1].lower() if m and len(m[1]) > 1 else ""


def is_url(text: str) -> bool:
    return scheme_of(str(text)) not in ("", "file")


def check_scheme(text: str, flag: str) -> str:
    """The scheme of TEXT if it is one ptgen reads; a one-line refusal otherwise."""
    scheme = scheme_of(text)
    if scheme and scheme not in SCHEMES:
        raise InputError(f"{flag} {text}: the scheme {scheme}: is not accepted; give a path or an "
                         f"{', '.join(s + '://' for s in SCHEMES)} URL")
    if scheme and not text[len(scheme) + 1:].startswith("//"):
        raise InputError(f"{flag} {text}: expected {scheme}://...")
    return scheme


def _filesystem(scheme: str, where: str):
    import fsspec

    try:
        return fsspec.filesystem("https" if scheme == "http" else scheme)
    except ImportError:
        extra = SCHEMES[scheme]
        hint = f"pip install -e '.[{extra}]'" if extra else "pip install huggingface_hub"
        raise InputError(f"{where}: reading {scheme}:// needs its fsspec back-end, which is not installed; "
                         f"{hint}") from None


@contextlib.contextmanager
def explained(where: str, scheme: str) -> Iterator[None]:
    """A back-end's failure as one line naming WHERE and the back-end's own reason: missing
    credentials (and where the back-end looks for them), access refused, nothing there, no answer."""
    try:
        yield
    except InputError:
        raise
    except Exception as err:  # back-ends raise their own classes (botocore, aiohttp, google.auth, ...)
        raise describe(err, where, scheme) from None


def describe(err: BaseException, where: str, scheme: str) -> InputError:
    reason = " ".join(str(err).split())[:200] or type(err).__name__
    names = {c.__name__ for c in type(err).__mro__}
    if names & set(_CREDENTIAL_ERRORS) or "401" in reason:
        return InputError(f"{where}: no credentials for {scheme}:// ({reason}); {scheme} looks for them in "
                          f"{CREDENTIALS.get(scheme, 'its own configuration')}")
    if isinstance(err, PermissionError) or "403" in reason or "AccessDenied" in reason:
        return InputError(f"{where}: access refused ({reason})")
    if isinstance(err, FileNotFoundError):
        return InputError(f"{where}: not found ({reason})")
    return InputError(f"{where}: cannot be reached ({type(err).__name__}: {reason})")


class Location:
    """A folder given as a path or a URL; its files are named relative to it."""

    def __init__(self, text: str | Path, flag: str = ""):
        self.text = str(text)
        self.flag = flag
        self.scheme = check_scheme(self.text, flag)
        self.remote = self.scheme not in ("", "file")
        self.where = f"{flag} {self.text}" if flag else self.text
        if self.remote:
            self.fs = _filesystem(self.scheme, self.where)
            self._root = self.fs._strip_protocol(self.text).rstrip("/")
            self.url = self.fs.unstrip_protocol(self._root)
        else:
            self.path = Path(self.text.removeprefix("file://"))
            self.url = str(self.path)

    def __str__(self) -> str:
        return self.text

    def _explained(self):
        return explained(self.where, self.scheme)

    def child(self, name: str) -> str:
        """The path or URL of NAME inside this folder; a name that would leave it is refused."""
        parts = name.split("/")
        if not name or scheme_of(name) or name.startswith("/") or any(p in ("", ".", "..") for p in parts):
            raise InputError(f"{self.where}: names {name[:60]!r}, which is not a file inside it; a folder's "
                             "files must lie below its own path or URL prefix")
        return f"{self._root}/{name}" if self.remote else str(self.path.resolve() / name)

    def sub(self, name: str) -> "Location":
        """The folder NAME inside this one."""
        return Location(self.url_of(name), self.flag)

    def url_of(self, name: str) -> str:
        """NAME inside the folder as a reader opens it (`open_stream`)."""
        child = self.child(name)
        return self.fs.unstrip_protocol(child) if self.remote else child

    def exists(self, name: str = "") -> bool:
        if not self.remote:
            return (self.path / name).exists() if name else self.path.exists()
        # fsspec answers "not found" to any failure, so an unreachable host would pass for an empty folder:
        # HTTP is asked directly, an object store for the object's details.
        path = self.child(name) if name else self._root
        with self._explained():
            try:
                if self.scheme in ("http", "https"):
                    urllib.request.urlopen(urllib.request.Request(path, method="HEAD"), timeout=60).close()
                else:
                    self.fs.info(path)
            except (FileNotFoundError, urllib.error.HTTPError) as err:
                if isinstance(err, urllib.error.HTTPError) and err.code != 404:
                    raise
                return False
        return True

    def read_bytes(self, name: str) -> bytes:
        if not self.remote:
            return (self.path / name).read_bytes()
        with self._explained():
            return self.fs.cat_file(self.child(name))

    def names(self, pattern: str = "*") -> list[str] | None:
        """Names of the files directly inside matching PATTERN, sorted; None where the back-end
        cannot list a folder (plain HTTP)."""
        if not self.remote:
            return sorted(p.name for p in self.path.glob(pattern)) if self.path.is_dir() else []
        sizes = self.sizes(pattern)
        return None if sizes is None else sorted(sizes)

    def sizes(self, pattern: str = "*") -> dict[str, int] | None:
        """{name: bytes} of the files directly inside matching PATTERN, from one listing (an object
        store's carries the sizes); None where the back-end cannot list a folder (plain HTTP)."""
        if not self.remote:
            if not self.path.is_dir():
                return {}
            return {entry.name: entry.stat().st_size for entry in os.scandir(self.path)
                    if fnmatch.fnmatch(entry.name, pattern) and entry.is_file()}
        if self.scheme in ("http", "https"):
            return None
        with self._explained():
            try:
                found = self.fs.ls(self._root, detail=True, refresh=True)
            except FileNotFoundError:
                return {}
        listed = {f["name"].rstrip("/").rsplit("/", 1)[-1]: f for f in found if f.get("type") != "directory"}
        return {name: int(f.get("size") or 0) for name, f in sorted(listed.items()) if fnmatch.fnmatch(name, pattern)}

    def write_bytes(self, name: str, data: bytes) -> None:
        """Write NAME whole: locally under a temporary name renamed into place; an object store
        shows an object only once its upload completes."""
        if not self.remote:
            target = self.path / name
            target.parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(target) as tmp:
                tmp.write_bytes(data)
            return
        with self._explained():
            self.fs.pipe_file(self.child(name), data)

    def create_bytes(self, name: str, data: bytes) -> bool:
        """Write NAME whole unless the folder has it already; whether this call wrote it. Exclusive
        on S3 (a put with If-None-Match): of writers that race, one wins and the others find its
        object; an S3-compatible store that ignores the header lets each of them win. Elsewhere a
        check and then a write, which racing writers may both pass (local folders have claim files
        for that: generate/soft_labels.py)."""
        if self.scheme != "s3":
            if self.exists(name):
                return False
            self.write_bytes(name, data)
            return True
        with self._explained():
            try:
                self.fs.pipe_file(self.child(name), data, mode="create")
                return True
            except FileExistsError:
                return False

    def upload(self, local: Path, name: str) -> None:
        """Upload the finished local file LOCAL to NAME in this remote folder, then delete LOCAL."""
        with self._explained():
            self.fs.put_file(str(local), self.child(name))
        local.unlink()

    def remove(self, names: list[str]) -> None:
        for name in names:
            if not self.remote:
                (self.path / name).unlink(missing_ok=True)
                continue
            with self._explained(), contextlib.suppress(FileNotFoundError):
                self.fs.rm_file(self.child(name))

    def check_writable(self) -> None:
        """Refuse a place that cannot take our files, before any work: a local folder as
        `check_output_dir` does, a bucket by writing and removing a hidden probe object."""
        if not self.remote:
            check_output_dir(self.path, self.flag)
            return
        if self.scheme not in WRITABLE:
            raise InputError(f"{self.where}: {self.scheme}:// is read-only here; write to a path or an "
                             f"{', '.join(s + '://' for s in WRITABLE if s != 'file')} URL")
        probe = f".ptgen-probe-{os.getpid()}-{os.urandom(4).hex()}"
        self.write_bytes(probe, b"")
        self.remove([probe])


def as_location(place: str | Path | Location, flag: str = "") -> Location:
    return place if isinstance(place, Location) else Location(place, flag)


def open_stream(url: str, flag: str = "") -> BinaryIO:
    """A file to read one shard from start to end, never fetched whole: a plain file locally; over
    HTTP one streamed GET; from an object store blocks of BLOCK_BYTES, the next one prefetched."""
    scheme = check_scheme(url, flag)
    if scheme in ("", "file"):
        return open(url.removeprefix("file://"), "rb")
    where = f"{flag} {url}" if flag else url
    fs = _filesystem(scheme, where)
    with explained(where, scheme):
        if scheme in ("http", "https"):
            return fs.open(url, "rb", block_size=0)
        return fs.open(url, "rb", block_size=BLOCK_BYTES, cache_type="background", cache_options={"maxblocks": 2})
