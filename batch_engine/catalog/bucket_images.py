"""Images named by a bucket URL (`image_url: s3://bucket/key`, also gs:// and az://), checked
before anything is sent: the object exists, holds at most 10 MB, and starts like a JPEG, PNG or
WebP. Each distinct object is looked at once, several at a time. Its whole structure is checked
when it is read for its upload (`pipeline.upload`): kie is never handed a bucket URL or a
presigned one, so the bucket can stay private and its credentials stay on this machine."""

from __future__ import annotations

from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor

from batch_engine.catalog.images import MAX_IMAGE_BYTES, signature_kind
from batch_engine.store.bucket import BucketError, BucketURL, object_bucket

IMAGE_FIELDS = ("image_url", "end_image_url")


def is_bucket_url(value: object) -> bool:
    try:
        return isinstance(value, str) and BucketURL.parse(value) is not None
    except ValueError:
        return True  # a bucket URL that cannot be one: the check says why


def check_object(text: str) -> str | None:
    """Why the object cannot be an item's image, or None."""
    try:
        url = BucketURL.parse(text)
    except ValueError as e:
        return str(e)
    if url is None or not url.prefix:
        return f"{text!r} names a bucket, not an object in it"
    try:
        bucket, key = object_bucket(url)
        found = bucket.head(key)
        if found is None:
            return f"{url}: no such object"
        if found.size > MAX_IMAGE_BYTES:
            return f"{url}: larger than allowed; at most {MAX_IMAGE_BYTES // (1024 * 1024)} MB"
        if found.size == 0 or signature_kind(bucket.read_head(key, 16)) is None:
            return f"{url}: not a JPEG, PNG or WebP image"
    except BucketError as e:
        return str(e)
    return None


def bucket_image_problems(labelled: Iterable[tuple[str, str, str]], *, workers: int = 16) -> list[str]:
    """A problem for each (label, field, url) whose object cannot be an image."""
    entries = list(labelled)
    urls = list(dict.fromkeys(url for _, _, url in entries))
    if not urls:
        return []
    with ThreadPoolExecutor(max_workers=min(workers, len(urls))) as pool:
        why = dict(zip(urls, pool.map(check_object, urls), strict=True))
    return [f"{label}: {field}: {why[url]}" for label, field, url in entries if why[url]]
