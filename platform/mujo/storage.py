"""Every path the platform reads or writes is local (the default) or ``s3://bucket/key``.

S3 endpoint and region come from the configuration (``storage.endpoint_url``, ``storage.region``) or the standard
environment variables (``AWS_ENDPOINT_URL``, ``AWS_DEFAULT_REGION``); credentials come only from the environment
or the cloud's instance profile (the standard AWS credential chain) — never from code or configs, and no
message here ever prints a secret.
"""

from __future__ import annotations

import json
import os
import posixpath
from functools import lru_cache
from typing import Any
from urllib.parse import urlparse

import pyarrow.fs as pafs


class StorageError(RuntimeError):
    """Storage is unreachable, refuses our credentials, or a path is wrong."""


def is_s3(uri: str) -> bool:
    return uri.startswith("s3://")


def join(base: str, *parts: str) -> str:
    """Join path components for a local path or an ``s3://`` URI."""
    if is_s3(base):
        return "s3://" + posixpath.join(base[5:], *parts)
    return os.path.join(base, *parts)


def endpoint_url() -> str | None:
    return os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL") or None


def configure(endpoint: str | None = None, region: str | None = None) -> None:
    """Make a configured endpoint/region the process default (and so the default of Ray workers it starts)."""
    if endpoint:  # S3 only: AWS_ENDPOINT_URL would also redirect STS (IRSA) and every other service
        os.environ["AWS_ENDPOINT_URL_S3"] = endpoint
    if region:
        os.environ["AWS_DEFAULT_REGION"] = region
    if endpoint and "AWS_EC2_METADATA_DISABLED" not in os.environ and not _is_aws_endpoint(endpoint):
        os.environ["AWS_EC2_METADATA_DISABLED"] = "true"  # off-cloud: do not wait on the instance metadata service
    _s3_filesystem.cache_clear()


def environment() -> dict[str, str]:
    """The non-secret storage variables to pass to Ray workers (runtime_env env_vars)."""
    keys = ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_DEFAULT_REGION", "AWS_REGION", "AWS_EC2_METADATA_DISABLED")
    return {k: os.environ[k] for k in keys if k in os.environ}


def _is_aws_endpoint(url: str) -> bool:
    return urlparse(url).hostname is not None and urlparse(url).hostname.endswith("amazonaws.com")


_RELEASE_REGISTERED = False


def _release_at_exit() -> None:
    """Drop our S3 filesystems before pyarrow finalises its S3 client at exit. A filesystem that outlives the
    finaliser (the cached ones here would) can abort the process at exit ("terminate called without an active
    exception", exit 134; apache/arrow#41087): atexit runs this first, since it registers after pyarrow.fs's."""
    global _RELEASE_REGISTERED
    if _RELEASE_REGISTERED:
        return
    import atexit
    import gc

    def release() -> None:
        _s3_filesystem.cache_clear()
        gc.collect()

    atexit.register(release)
    _RELEASE_REGISTERED = True


@lru_cache(maxsize=8)
def _s3_filesystem(endpoint: str | None, region: str, request_timeout: float = 60.0,
                   attempts: int = 3) -> pafs.S3FileSystem:
    kwargs: dict[str, Any] = {"region": region, "connect_timeout": min(5.0, request_timeout),
                              "request_timeout": request_timeout,
                              "retry_strategy": pafs.AwsStandardS3RetryStrategy(max_attempts=attempts)}
    if endpoint:
        parsed = urlparse(endpoint)
        kwargs["endpoint_override"] = parsed.netloc or parsed.path
        kwargs["scheme"] = parsed.scheme or "https"
    _release_at_exit()
    return pafs.S3FileSystem(**kwargs)


def _region() -> str:
    return os.environ.get("AWS_DEFAULT_REGION") or os.environ.get("AWS_REGION") or "us-east-1"


def filesystem(uri: str) -> tuple[pafs.FileSystem, str]:
    """The pyarrow filesystem for ``uri`` and the path to use with it."""
    if is_s3(uri):
        return _s3_filesystem(endpoint_url(), _region()), uri[5:].rstrip("/")
    return pafs.LocalFileSystem(), os.path.abspath(uri)


def describe(uri: str) -> str:
    """Where ``uri`` lives, for messages: the endpoint for S3 (never credentials)."""
    if is_s3(uri):
        return f"{uri} (endpoint {endpoint_url() or 'AWS default'})"
    return os.path.abspath(uri)


def _wrap(uri: str, exc: Exception) -> StorageError:
    text = str(exc)
    hint = ""
    if any(s in text for s in ("InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied", "403")):
        hint = ("the credentials were refused: check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (or the node's "
                "instance profile) for this bucket")
    elif any(s in text for s in ("NoSuchBucket", "does not exist")):
        hint = "the bucket does not exist: create it (infra/) or fix storage.root"
    elif any(s in text.lower() for s in ("connect", "resolve", "timed out", "timeout", "curl")):
        hint = "the endpoint is unreachable: is the S3 server running, and is storage.endpoint_url right?"
    msg = f"storage error at {describe(uri)}: {hint or text}"
    if hint:
        msg += f" [{type(exc).__name__}]"
    return StorageError(msg)


def makedirs(uri: str) -> None:
    fs, path = filesystem(uri)
    try:
        fs.create_dir(path, recursive=True)
    except OSError as exc:
        raise _wrap(uri, exc) from exc


def exists(uri: str) -> bool:
    fs, path = filesystem(uri)
    try:
        return fs.get_file_info(path).type != pafs.FileType.NotFound
    except OSError as exc:
        raise _wrap(uri, exc) from exc


def list_files(uri: str, suffix: str = "") -> list[str]:
    """Files under ``uri`` (recursively) ending with ``suffix``, as full URIs, sorted."""
    fs, path = filesystem(uri)
    try:
        infos = fs.get_file_info(pafs.FileSelector(path, recursive=True, allow_not_found=True))
    except OSError as exc:
        raise _wrap(uri, exc) from exc
    paths = sorted(i.path for i in infos if i.type == pafs.FileType.File and i.path.endswith(suffix))
    return [("s3://" + p) if is_s3(uri) else p for p in paths]


def write_bytes(uri: str, data: bytes) -> None:
    """Write a whole file atomically (temporary name, then move)."""
    fs, path = filesystem(uri)
    parent = posixpath.dirname(path) if is_s3(uri) else os.path.dirname(path)
    tmp = f"{path}.tmp-{os.getpid()}"
    try:
        fs.create_dir(parent, recursive=True)
        with fs.open_output_stream(tmp) as f:
            f.write(data)
        fs.move(tmp, path)
    except OSError as exc:
        raise _wrap(uri, exc) from exc


def read_bytes(uri: str) -> bytes:
    fs, path = filesystem(uri)
    try:
        with fs.open_input_stream(path) as f:
            return f.read()
    except FileNotFoundError as exc:
        raise StorageError(f"{describe(uri)} does not exist") from exc
    except OSError as exc:
        raise _wrap(uri, exc) from exc


def _floating(t) -> bool:
    """Is ``t`` floating point, or a list / tensor of floating point (at any depth)?"""
    import pyarrow as pa

    while True:
        if isinstance(t, pa.BaseExtensionType):
            t = t.storage_type
        elif pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t):
            t = t.value_type
        else:
            return pa.types.is_floating(t)


def write_table(table, uri: str, compression: str = "zstd") -> None:
    """Write a Parquet file atomically: a reader (or a resumed run) never sees a half-written file.

    Dictionary encoding only for the columns that are not floating point: sensor values and features rarely repeat,
    so a dictionary for them is built and then abandoned, for every page (figures in ``benchmarks/README.md``)."""
    import pyarrow.parquet as pq

    fs, path = filesystem(uri)
    tmp = f"{path}.tmp-{os.getpid()}-{os.urandom(4).hex()}"
    dictionary = [f.name for f in table.schema if not _floating(f.type)]
    try:
        fs.create_dir(posixpath.dirname(path) if is_s3(uri) else os.path.dirname(path), recursive=True)
        pq.write_table(table, tmp, filesystem=fs, compression=compression, use_dictionary=dictionary)
        fs.move(tmp, path)
    except OSError as exc:
        raise _wrap(uri, exc) from exc


def write_json(uri: str, obj: Any) -> None:
    write_bytes(uri, json.dumps(obj, indent=2, sort_keys=True, default=str).encode())


def read_json(uri: str) -> Any:
    """A JSON file; :class:`~mujo.errors.InputError` naming the file (not a bare JSONDecodeError) when it is not
    valid JSON."""
    from mujo.errors import InputError

    data = read_bytes(uri)
    try:
        return json.loads(data)
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError
        raise InputError(f"{describe(uri)} is not valid JSON ({exc}); it was truncated or edited by hand: write it "
                         "again with the stage that makes it") from None


def write_text(uri: str, text: str) -> None:
    write_bytes(uri, text.encode())


PROBE_TIMEOUT_S = 10.0
"""Start-up storage checks wait at most about this long per request (one retry): a bucket that accepts connections
but never answers must fail the job in seconds, not after the long timeouts that bulk transfers need."""


def check_writable(uri: str, timeout_s: float = PROBE_TIMEOUT_S) -> None:
    """Fail fast, naming the endpoint, when ``uri``'s storage cannot be reached or written: a write and a delete
    with short timeouts (``timeout_s`` per request, default :data:`PROBE_TIMEOUT_S`; ``storage.probe_timeout_s``),
    announced in the log so a slow endpoint is never silence."""
    import logging

    probe = join(uri, ".mujo-write-check")
    if not is_s3(uri):
        write_bytes(probe, b"ok")
        fs, path = filesystem(probe)
    else:
        logging.getLogger(__name__).info("checking that %s is reachable and writable (at most ~%.0f s)",
                                         describe(uri), 2 * timeout_s)
        fs, path = _s3_filesystem(endpoint_url(), _region(), timeout_s, 2), probe[5:]
        try:
            with fs.open_output_stream(path) as f:
                f.write(b"ok")
        except OSError as exc:
            raise _wrap(uri, exc) from exc
    try:
        fs.delete_file(path)
    except OSError as exc:
        raise _wrap(uri, exc) from exc
    _WRITABLE.add(uri.rstrip("/"))


_WRITABLE: set[str] = set()


def was_checked_writable(uri: str) -> bool:
    """Did :func:`check_writable` succeed in this process for ``uri`` or a folder above it? (Exit handlers write
    only where storage answered: a write to a bucket that never answers would hold the process for minutes.)"""
    uri = uri.rstrip("/")
    return any(uri == w or uri.startswith(w + "/") for w in _WRITABLE)


def ray_storage(uri: str) -> dict:
    """``storage_path`` and ``storage_filesystem`` for a Ray Train / Tune ``RunConfig`` that keeps its runs under
    ``uri`` (local or ``s3://``, with this process's endpoint settings); creates the folder."""
    import pyarrow.fs

    makedirs(uri)
    fs, path = filesystem(uri)
    return {"storage_path": path,
            "storage_filesystem": None if isinstance(fs, pyarrow.fs.LocalFileSystem) else fs}
