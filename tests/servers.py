"""Real servers on loopback for the storage tests: moto's S3 server and a plain HTTP file server.

Only 127.0.0.1 is ever contacted. The S3 endpoint reaches every client through the standard
AWS_ENDPOINT_URL, as a user points s3fs (or the aws CLI) at an S3-compatible store; the metadata
service lookup that botocore would otherwise try is switched off.
"""

from __future__ import annotations

import contextlib
import functools
import http.server
import logging
import os
import threading
from pathlib import Path
from typing import Iterator

# Dummy keys that moto accepts, and nothing that could reach a real account.
S3_ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
          "AWS_EC2_METADATA_DISABLED": "true", "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
          "AWS_CONFIG_FILE": os.devnull, "AWS_MAX_ATTEMPTS": "1"}


@contextlib.contextmanager
def environment(values: dict[str, str | None]) -> Iterator[None]:
    """os.environ with VALUES set (None: removed), restored afterwards."""
    saved = {k: os.environ.get(k) for k in values}
    for k, v in values.items():
        os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)
    try:
        yield
    finally:
        for k, v in saved.items():
            os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)


def fresh_s3():
    """An s3fs filesystem built now, from the current environment (fsspec caches instances)."""
    import s3fs

    s3fs.S3FileSystem.clear_instance_cache()
    return s3fs.S3FileSystem()


@contextlib.contextmanager
def moto_s3() -> Iterator[str]:
    """moto's S3 server on 127.0.0.1 at a free port, the environment pointed at it; yields its endpoint."""
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one log line per request otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    try:
        with environment({**S3_ENV, "AWS_ENDPOINT_URL": endpoint}):
            fresh_s3()
            yield endpoint
    finally:
        server.stop()


@contextlib.contextmanager
def http_folder(root: Path) -> Iterator[str]:
    """ROOT served read-only over HTTP on 127.0.0.1 at a free port; yields its base URL."""

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
