"""Object storage and web files through fsspec (the `remote` extra): open, list and stat a URL, and
turn the storage library's errors into one sentence each.

`s3://` needs s3fs, `gs://` gcsfs, `https://` aiohttp and `hf://` huggingface_hub, all in the extra.
Credentials and endpoints come from where each library looks (for S3: `AWS_ACCESS_KEY_ID` /
`AWS_SECRET_ACCESS_KEY` or `AWS_PROFILE`, and `AWS_ENDPOINT_URL` for an S3-compatible server; fsspec's
own `FSSPEC_<PROTOCOL>_<OPTION>` variables pass any other option).
"""

from __future__ import annotations

import contextlib
import datetime
from typing import Any, Iterator

from llm_lit.errors import UserError, one_line

INSTALL = "pip install 'llm_lit[remote]'"
#: The package fsspec needs for each protocol (named in the install line when it is missing).
PACKAGES = {"s3": "s3fs", "s3a": "s3fs", "gs": "gcsfs", "gcs": "gcsfs", "http": "aiohttp", "https": "aiohttp",
            "hf": "huggingface_hub", "az": "adlfs", "abfs": "adlfs"}


def is_remote(path: str) -> bool:
    """Whether `path` is a URL read through fsspec (anything with a scheme, except file://)."""
    return "://" in str(path) and not str(path).startswith("file://")


def protocol_of(url: str) -> str:
    """The URL's scheme, e.g. "s3"."""
    return url.split("://", 1)[0].lower()


def filesystem(url: str) -> tuple[Any, str]:
    """The fsspec file system of `url` and the path inside it; `UserError` with the install line when fsspec
    or the protocol's package is missing."""
    protocol = protocol_of(url)
    try:
        import fsspec
    except ImportError:
        raise UserError(f"Reading '{url}' needs fsspec, which is not installed; {INSTALL}.") from None
    try:
        return fsspec.core.url_to_fs(url)
    except ImportError:
        package = PACKAGES.get(protocol, f"the fsspec implementation of {protocol}://")
        raise UserError(f"Reading '{url}' needs {package}, which is not installed; {INSTALL} "
                        f"(or pip install {package}).") from None
    except ValueError as e:
        raise UserError(f"The URL '{url}' cannot be read: {one_line(e)}; pass an s3://, gs://, https:// or hf:// URL "
                        "(or a local path).") from None


@contextlib.contextmanager
def storage_errors(url: str) -> Iterator[None]:
    """Turn what the storage libraries raise while reading `url` into one `UserError` sentence
    (missing credentials, a bucket or object that is not there, access denied, a network failure)."""
    try:
        yield
    except UserError:
        raise
    except Exception as e:  # botocore, aiohttp and huggingface_hub errors have no common base
        raise UserError(describe(url, e)) from None


def describe(url: str, error: BaseException) -> str:
    """One sentence for a storage `error` met while reading `url`."""
    kind = type(error).__name__
    text = one_line(error)
    causes = f"{kind} {text} {type(error.__cause__).__name__ if error.__cause__ else ''}"
    if "NoCredentials" in causes or "Unable to locate credentials" in text or "PartialCredentials" in causes:
        return (f"No credentials were found to read '{url}'; set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or "
                "AWS_PROFILE) for s3://, or the login of the storage service for other URLs.")
    if "NoSuchBucket" in causes or "bucket does not exist" in text.lower():
        bucket = url.split("://", 1)[1].split("/", 1)[0]
        return f"The bucket '{bucket}' of '{url}' does not exist; check the URL (and AWS_ENDPOINT_URL for an S3-compatible server)."
    if isinstance(error, FileNotFoundError) or "NoSuchKey" in causes or "404" in text:
        return f"'{url}' does not exist; check the URL."
    if isinstance(error, PermissionError) or "AccessDenied" in causes or "403" in text or "InvalidAccessKeyId" in causes \
            or "SignatureDoesNotMatch" in causes:
        return f"Access to '{url}' was denied ({text[:200]}); check the credentials and the permissions of the bucket."
    return f"Cannot read '{url}' ({kind}: {text[:200]}); check the URL and the network, then run again."


def version_of(info: dict[str, Any]) -> str | None:
    """What identifies an object's content in a listing: its ETag, content hash or generation."""
    for key in ("ETag", "etag", "md5Hash", "crc32c", "generation", "blob_id"):
        if info.get(key):
            return str(info[key]).strip('"')
    lfs = info.get("lfs")
    if isinstance(lfs, dict) and lfs.get("sha256"):
        return str(lfs["sha256"])
    return None


def mtime_ns_of(info: dict[str, Any]) -> int:
    """The object's modification time in ns (0 when the store reports none)."""
    for key in ("LastModified", "last_modified", "mtime", "updated", "created"):
        value = info.get(key)
        if isinstance(value, datetime.datetime):
            return int(value.timestamp() * 1e9)
        if isinstance(value, (int, float)):
            return int(value * 1e9)
        if isinstance(value, str):
            try:
                return int(datetime.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp() * 1e9)
            except ValueError:
                continue
    return 0


def listing(url: str) -> list[tuple[str, dict[str, Any]]]:
    """`(url, info)` of each object `url` names: the matches of a glob (one listing request, sorted), or the
    object itself (one metadata request)."""
    fs, path = filesystem(url)
    protocol = protocol_of(url)
    with storage_errors(url):
        fs.invalidate_cache()  # a listing made earlier in this process may be stale
        if any(c in path for c in "*?["):
            found = fs.glob(path, detail=True)
            items = sorted((p, info) for p, info in found.items() if info.get("type", "file") != "directory")
            if not items:  # say so when the bucket itself is missing
                _check_bucket(fs, url, path.split("/", 1)[0])
        else:
            info = fs.info(path)
            if info.get("type") == "directory":
                raise UserError(f"'{url}' is a folder; name its files with a glob, e.g. '{url.rstrip('/')}/*.parquet'.")
            items = [(path, info)]
    return [(_as_url(fs, protocol, p), info) for p, info in items]


def _check_bucket(fs: Any, url: str, bucket: str) -> None:
    """`UserError` when the bucket (the first part of the path) of `url` is not there."""
    try:
        found = fs.exists(bucket)
    except FileNotFoundError:
        found = False
    if not found:
        raise UserError(f"The bucket '{bucket}' of '{url}' does not exist; check the URL (and AWS_ENDPOINT_URL for an "
                        "S3-compatible server).")


def stat(url: str) -> dict[str, Any]:
    """The object's metadata now (one request)."""
    fs, path = filesystem(url)
    with storage_errors(url):
        return fs.info(path)


def open_binary(url: str, block_size: int = 8 << 20) -> Any:
    """`url` opened for reading as a binary file object (read ahead in blocks of `block_size`)."""
    fs, path = filesystem(url)
    with storage_errors(url):
        return fs.open(path, "rb", block_size=block_size)


def _as_url(fs: Any, protocol: str, path: str) -> str:
    if "://" in path:
        return path
    try:
        return fs.unstrip_protocol(path)
    except Exception:  # older fsspec
        return f"{protocol}://{path}"
