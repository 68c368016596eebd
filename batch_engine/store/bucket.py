"""A bucket (S3, GCS or Azure) as the engine uses it: a URL's parts, a client made from the cloud's
own environment, and a few calls that turn every failure into one user-facing `BucketError`.

Built on obstore (Rust's object_store): one library for the three clouds, streaming multipart
uploads from a file, conditional puts (the lease and the ledger's segments), its own retries with
back-off for 5xx answers, SlowDown and timeouts. Credentials come from the cloud's standard
variables and files only (for S3 also AWS_PROFILE, through boto3 when it is installed); they are
never read from a manifest and never appear in a message (an error names the bucket and the key).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, BinaryIO

from batch_engine.text import clean

SCHEMES = {"s3": "S3", "gs": "GCS", "az": "Azure"}
_BUCKET_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{1,254}")


class BucketError(Exception):
    """A bucket refused or could not be reached (after the library's retries): a user-facing message.
    `kind`: "missing" (no such object or bucket), "denied", "exists", "changed" or "unavailable"."""

    def __init__(self, message: str, kind: str = "unavailable") -> None:
        super().__init__(message)
        self.kind = kind


@dataclass(frozen=True, slots=True)
class BucketURL:
    scheme: str   # s3, gs or az
    bucket: str
    prefix: str   # without a leading or trailing slash; may be empty

    @classmethod
    def parse(cls, text: str) -> BucketURL | None:
        """The parts of `scheme://bucket/prefix`; None when `text` is not a bucket URL at all.
        ValueError for a bucket URL that cannot be one."""
        scheme, sep, rest = text.partition("://")
        if not sep or scheme.lower() not in SCHEMES:
            return None
        bucket, _, prefix = rest.partition("/")
        if not text.isprintable() or " " in text or "\\" in text:
            raise ValueError(f"{clean(text)!r}: a bucket URL holds no white space, backslash or control character")
        if not bucket or "@" in bucket or ":" in bucket or "?" in text or "#" in text:
            raise ValueError(f"{clean(text)!r} is not {scheme}://BUCKET/PREFIX (no user, port, query or fragment)")
        if not _BUCKET_NAME.fullmatch(bucket):
            raise ValueError(f"{clean(text)!r}: {clean(bucket)!r} is not a bucket name (letters, digits, '.', '-', '_')")
        parts = [p for p in prefix.split("/") if p]
        if any(p in (".", "..") for p in parts):
            raise ValueError(f"{clean(text)!r}: a bucket prefix has no '.' or '..' part")
        return cls(scheme.lower(), bucket, "/".join(parts))

    def __str__(self) -> str:
        return f"{self.scheme}://{self.bucket}/{self.prefix}".rstrip("/")

    def key(self, name: str) -> str:
        return f"{self.prefix}/{name}" if self.prefix else name

    def url(self, name: str) -> str:
        return f"{self}/{name}"


@dataclass(frozen=True, slots=True)
class Entry:
    name: str          # relative to the prefix it was listed under
    size: int
    etag: str | None
    modified: datetime


def open_bucket(url: BucketURL, environ: Mapping[str, str] = os.environ, *, retry_seconds: float = 120.0) -> Bucket:
    """A client for the bucket of `url`, rooted at its prefix, from the cloud's environment."""
    from obstore.store import AzureStore, GCSStore, S3Store

    retry: Any = {"max_retries": 8, "retry_timeout": timedelta(seconds=retry_seconds),
                  "backoff": {"init_backoff": timedelta(milliseconds=100), "max_backoff": timedelta(seconds=10),
                              "base": 2}}
    client: Any = {"connect_timeout": "10s", "timeout": "120s"}
    prefix = url.prefix or None
    if url.scheme == "s3":
        endpoint = environ.get("AWS_ENDPOINT_URL_S3") or environ.get("AWS_ENDPOINT_URL") or environ.get("AWS_ENDPOINT")
        if endpoint and endpoint.startswith("http://"):
            client["allow_http"] = True
        config: Any = {"region": environ["AWS_REGION"]} if environ.get("AWS_REGION") else {}
        if endpoint:
            config["endpoint"] = endpoint
        if environ.get("AWS_PROFILE") and not environ.get("AWS_ACCESS_KEY_ID"):
            return Bucket(url, S3Store(url.bucket, prefix=prefix, config=config, client_options=client,
                                       retry_config=retry, credential_provider=_profile(environ["AWS_PROFILE"])))
        return Bucket(url, S3Store(url.bucket, prefix=prefix, config=config, client_options=client, retry_config=retry))
    if url.scheme == "gs":
        return Bucket(url, GCSStore(url.bucket, prefix=prefix, client_options=client, retry_config=retry))
    account = environ.get("AZURE_STORAGE_ACCOUNT_NAME") or environ.get("AZURE_STORAGE_ACCOUNT")
    if not account:
        raise BucketError("az:// needs AZURE_STORAGE_ACCOUNT_NAME (the storage account) in the environment",
                          "denied")
    return Bucket(url, AzureStore(url.bucket, prefix=prefix, config={"account_name": account},
                                  client_options=client, retry_config=retry))


def _profile(name: str) -> Any:
    try:
        import boto3  # type: ignore[import-untyped]  # boto3 ships no types
        from obstore.auth.boto3 import Boto3CredentialProvider
    except ImportError:
        raise BucketError("AWS_PROFILE is set: reading a profile needs boto3 (pip install 'batch-engine[profiles]', or boto3), "
                          "or set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY", "denied") from None
    return Boto3CredentialProvider(boto3.Session(profile_name=name))


class Bucket:
    """The calls the engine makes, each raising BucketError (never the library's own errors)."""

    def __init__(self, url: BucketURL, store: Any) -> None:
        self.url = url
        self._store = store

    def __repr__(self) -> str:
        return f"<Bucket {self.url}>"

    def head(self, name: str) -> Entry | None:
        import obstore
        try:
            return _entry(obstore.head(self._store, name), "")
        except Exception as e:
            if _kind(e) == "missing" and not _no_bucket(e):
                return None
            raise self._error(e, name) from None

    def read(self, name: str, limit: int) -> bytes | None:
        """The whole object (None when there is none); BucketError when it holds more than `limit`."""
        import obstore
        try:
            result = obstore.get(self._store, name)
            if result.meta["size"] > limit:
                raise BucketError(f"{self.url.url(name)} holds {result.meta['size']} bytes, more than "
                                  f"the {limit} allowed", "denied")
            data = bytes(result.bytes())
        except BucketError:
            raise
        except Exception as e:
            if _kind(e) == "missing" and not _no_bucket(e):
                return None
            raise self._error(e, name) from None
        if len(data) > limit:
            raise BucketError(f"{self.url.url(name)} holds more than the {limit} bytes allowed", "denied")
        return data

    def read_head(self, name: str, size: int) -> bytes:
        """The first `size` bytes of an object (its type's signature)."""
        import obstore
        try:
            return bytes(obstore.get_range(self._store, name, start=0, length=size))
        except Exception as e:
            raise self._error(e, name) from None

    def put(self, name: str, data: bytes, *, create: bool = False, etag: str | None = None,
            content_type: str = "application/octet-stream") -> str | None:
        """Write `data` whole; `create`: only if there is no object; `etag`: only if it is still
        that version. Returns the new version's ETag."""
        import obstore
        mode: Any = "create" if create else {"e_tag": etag} if etag else "overwrite"
        try:
            done = obstore.put(self._store, name, data, mode=mode, attributes={"Content-Type": content_type})
        except Exception as e:
            raise self._error(e, name) from None
        return done["e_tag"]

    def put_file(self, name: str, path: Path, metadata: Mapping[str, str], content_type: str) -> None:
        """Stream a file into the bucket (the library's multipart put for a large one, its parts sent
        side by side): visible whole or not at all."""
        import obstore
        if not path.is_file():
            raise BucketError(f"cannot read {path}: not a file")
        try:
            obstore.put(self._store, name, path, attributes={"Content-Type": content_type, **metadata})
        except OSError as e:
            if _kind(e) == "unavailable":
                raise BucketError(f"cannot read {path}: {e.strerror or e}") from None
            raise self._error(e, name) from None
        except Exception as e:
            raise self._error(e, name) from None

    def read_into(self, name: str, file: BinaryIO) -> int:
        """Stream an object into an open file; its size."""
        import obstore
        size = 0
        try:
            for chunk in obstore.get(self._store, name).stream(min_chunk_size=1024 * 1024):
                file.write(chunk)
                size += len(chunk)
        except OSError as e:
            raise BucketError(f"cannot write a local copy of {self.url.url(name)}: {e.strerror or e}") from None
        except Exception as e:
            raise self._error(e, name) from None
        return size

    def metadata(self, name: str) -> dict[str, str]:
        import obstore
        try:
            return {str(k): str(v) for k, v in obstore.get(self._store, name).attributes.items()}
        except Exception as e:
            raise self._error(e, name) from None

    def entries(self, under: str = "") -> Iterator[Entry]:
        """The objects directly in the folder `under` ("" for the prefix itself, else a name
        ending in "/"), listed page by page."""
        import obstore
        try:
            for page in obstore.list(self._store, under or None, chunk_size=1000):
                for meta in page:
                    entry = _entry(meta, under)
                    if "/" not in entry.name:
                        yield entry
        except Exception as e:
            raise self._error(e, under or ".") from None

    def copy(self, source: str, target: str) -> None:
        import obstore
        try:
            obstore.copy(self._store, source, target)
        except Exception as e:
            raise self._error(e, source) from None

    def delete(self, name: str) -> None:
        import obstore
        try:
            obstore.delete(self._store, name)
        except Exception as e:
            if _kind(e) != "missing":
                raise self._error(e, name) from None

    def _error(self, error: Exception, name: str) -> BucketError:
        kind = _kind(error)
        where = self.url.url(name)
        if kind == "missing" and _no_bucket(error):
            return BucketError(f"the bucket {self.url.bucket!r} does not exist (or is not visible with "
                               "these credentials)", "missing")
        words = {
            "missing": f"{where} does not exist",
            "denied": f"{where}: access denied: check the credentials in the environment "
                      "(AWS_*, GOOGLE_APPLICATION_CREDENTIALS, AZURE_*) and their permissions",
            "exists": f"{where} already exists",
            "changed": f"{where} was changed by someone else",
        }
        return BucketError(words.get(kind) or f"{where}: the bucket did not answer well after retries "
                           f"({_reason(error)})", kind)


def _entry(meta: Any, under: str) -> Entry:
    path = str(meta["path"])
    return Entry(path[len(under):] if under and path.startswith(under) else path, int(meta["size"]),
                 meta.get("e_tag"), meta["last_modified"])


def _kind(error: Exception) -> str:
    from obstore import exceptions as ox
    if isinstance(error, (ox.NotFoundError, FileNotFoundError)):
        return "missing"
    if isinstance(error, (ox.PermissionDeniedError, ox.UnauthenticatedError, PermissionError)):
        return "denied"
    if isinstance(error, (ox.AlreadyExistsError, FileExistsError)):
        return "exists"
    if isinstance(error, (ox.PreconditionError, ox.NotModifiedError)):
        return "changed"
    text = str(error)
    if "403 Forbidden" in text or "AccessDenied" in text or "InvalidAccessKeyId" in text:
        return "denied"
    if "NoSuchBucket" in text:
        return "missing"
    return "unavailable"


def _no_bucket(error: Exception) -> bool:
    return "NoSuchBucket" in str(error)


def _reason(error: Exception) -> str:
    """The library's words, first line only, without any URL's query (a signature) or control text."""
    first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return clean(" ".join(word.split("?")[0] for word in first.split()))[:200]


def object_bucket(url: BucketURL) -> tuple[Bucket, str]:
    """A client for the bucket an object URL names (one per bucket, re-used), and the object's key."""
    root = BucketURL(url.scheme, url.bucket, "")
    if root not in _clients:
        _clients[root] = open_bucket(root)
    return _clients[root], url.prefix


_clients: dict[BucketURL, Bucket] = {}
