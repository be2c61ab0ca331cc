"""Audio in an S3-compatible bucket (MinIO, Ceph RGW, SeaweedFS, Aliyun OSS, Tencent COS),
with a bounded local read-through cache: the same methods as the local `FileStore`.

Objects are content-addressed, under `prefix/ab/cd/<name>` like the folder's shards. A PUT
is atomic (an object is whole or absent), and the store writes an object before its row is
committed, so a row never names an object that is not there. Every call blocks (boto3), and
the store makes them on its I/O threads, never on the event loop. Credentials come from the
standard AWS environment (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`), never the settings.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from cache.files import AudioStoreError, FileStore, Stored, store_name

log = logging.getLogger("huiyin.cache")


_NO_OBJECT = ("404", "NoSuchKey")  # the error codes of an absent object
_NO_BUCKET = ("404", "NoSuchBucket")  # and of an absent bucket


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", "?"))


@dataclass(frozen=True)
class Bucket:
    """Where the audio is: `s3://bucket/prefix` and how to reach it."""

    bucket: str
    prefix: str
    endpoint_url: str | None = None
    region: str | None = None
    timeout: float = 10.0

    @staticmethod
    def parse(url: str, **options: Any) -> Bucket:
        """A bucket from `s3://bucket[/prefix]`; ValueError naming the problem."""
        parts = urlsplit(url)
        if parts.scheme != "s3" or not parts.netloc:
            raise ValueError(f"audio_store must be s3://bucket[/prefix], not {url!r}")
        prefix = parts.path.strip("/")
        return Bucket(parts.netloc, f"{prefix}/" if prefix else "", **options)


class LocalCache:
    """Objects read from the bucket, kept on local disk up to a byte budget (least recently
    used leave first); shared by the store's I/O threads."""

    def __init__(self, root: Path, max_bytes: int) -> None:
        self._files = FileStore(root)
        self._max_bytes = max_bytes
        self._sizes: OrderedDict[str, int] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def open(self) -> None:
        """Make the folder and learn what it holds from an earlier run (blocking)."""
        self._files.create()
        for stored in self._files.walk():
            if stored.name is None:
                self._files.remove(stored.location)  # an interrupted copy
                continue
            size = self._files.path(stored.name).stat().st_size
            with self._lock:
                self._sizes[stored.name] = size
                self._bytes += size
        self._trim()

    @property
    def held(self) -> int:
        """Bytes held."""
        return self._bytes

    def get(self, name: str) -> bytes | None:
        """A copy, when one is held."""
        with self._lock:
            if name not in self._sizes:
                return None
            self._sizes.move_to_end(name)
        data = self._files.read(name)
        if data is None:
            self.drop(name)
        return data

    def put(self, name: str, data: bytes) -> None:
        """Hold a copy (nothing when the budget is 0 or the object is larger than it)."""
        if len(data) > self._max_bytes:
            return
        self._files.write(name, data)
        with self._lock:
            self._bytes += len(data) - self._sizes.pop(name, 0)
            self._sizes[name] = len(data)
        self._trim()

    def drop(self, name: str) -> None:
        """Forget a copy."""
        with self._lock:
            self._bytes -= self._sizes.pop(name, 0)
        self._files.delete(name)

    def drop_keys(self, keys: Collection[str]) -> None:
        """Forget every copy of these phrases' objects (masters and encodings)."""
        with self._lock:
            names = [n for n in self._sizes if n[:32] in keys]
        for name in names:
            self.drop(name)

    def _trim(self) -> None:
        while True:
            with self._lock:
                if self._bytes <= self._max_bytes or not self._sizes:
                    return
                name, size = self._sizes.popitem(last=False)
                self._bytes -= size
            self._files.delete(name)


class ObjectStore:
    """The store's audio in a bucket, read through a local cache."""

    remote = True  # when it is down, stored prompts still play: the gateway stays ready

    def __init__(self, bucket: Bucket, cache_dir: Path, cache_bytes: int) -> None:
        self.bucket = bucket
        self.cache_dir, self.cache_bytes = cache_dir, cache_bytes
        self.local = LocalCache(cache_dir, cache_bytes)
        self._client = boto3.session.Session().client(
            "s3", endpoint_url=bucket.endpoint_url, region_name=bucket.region,
            config=Config(connect_timeout=bucket.timeout, read_timeout=bucket.timeout,
                          retries={"max_attempts": 2, "mode": "standard"},
                          s3={"addressing_style": "path"}),
        )

    def _key(self, name: str) -> str:
        name = FileStore._checked(name)
        return f"{self.bucket.prefix}{name[0:2]}/{name[2:4]}/{name}"

    def _call(self, what: str, fn: Any, *, missing_ok: bool = False, **kwargs: Any) -> Any:
        """fn on the bucket, its failures as AudioStoreError; None for a missing object
        when `missing_ok`."""
        try:
            return fn(Bucket=self.bucket.bucket, **kwargs)
        except ClientError as exc:
            if missing_ok and _code(exc) in _NO_OBJECT:
                return None
            raise AudioStoreError(f"the audio bucket refused {what} ({_code(exc)})") from None
        except BotoCoreError as exc:
            raise AudioStoreError(f"the audio bucket cannot be reached for {what} "
                                  f"({type(exc).__name__})") from None

    def create(self) -> None:
        """Open the local cache; make the bucket when it does not exist (blocking)."""
        self.local.open()
        try:
            self._client.head_bucket(Bucket=self.bucket.bucket)
        except ClientError as exc:
            if _code(exc) not in _NO_BUCKET:
                raise AudioStoreError(f"the audio bucket cannot be used ({_code(exc)})") from None
            self._call("creating the bucket", self._client.create_bucket)
        except BotoCoreError as exc:
            # Down for now: what the local cache holds keeps playing; writes fail until it is back.
            log.warning("the audio bucket cannot be reached (%s); serving what is cached "
                        "locally until it is back", type(exc).__name__)

    def write(self, name: str, data: bytes) -> None:
        """PUT the object (atomic), then keep a local copy."""
        self._call("a write", self._client.put_object, Key=self._key(name), Body=data)
        self.local.put(name, data)

    def read(self, name: str) -> bytes | None:
        """The object's bytes (the local copy first), or None when it is not in the bucket."""
        held = self.local.get(name)
        if held is not None:
            return held
        data: bytes | None = self._call(
            "a read", lambda **kw: self._client.get_object(**kw)["Body"].read(),
            Key=self._key(name), missing_ok=True,
        )
        if data is not None:
            self.local.put(name, data)
        return data

    def delete(self, name: str) -> None:
        """Remove the object and its local copy."""
        self.local.drop(name)
        self._call("a delete", self._client.delete_object, Key=self._key(name))

    def walk(self) -> Iterator[Stored]:
        """Every object under the prefix."""
        token: dict[str, Any] = {}
        while True:
            page = self._call("a listing", self._client.list_objects_v2,
                              Prefix=self.bucket.prefix, **token)
            for item in page.get("Contents", ()):
                location = item["Key"][len(self.bucket.prefix):]
                yield Stored(location, store_name(location.rsplit("/", 1)[-1]),
                             item["LastModified"].timestamp())
            if not page.get("IsTruncated"):
                return
            token = {"ContinuationToken": page["NextContinuationToken"]}

    def modified(self, location: str) -> float | None:
        """When the object at a location from `walk` was written; None when it is gone."""
        head = self._call("a lookup", self._client.head_object, missing_ok=True,
                          Key=self.bucket.prefix + location)
        return None if head is None else float(head["LastModified"].timestamp())

    def remove(self, location: str) -> None:
        """Remove the object at a location from `walk`."""
        name = store_name(location.rsplit("/", 1)[-1])
        if name is not None:
            self.local.drop(name)
        self._call("a delete", self._client.delete_object, Key=self.bucket.prefix + location)

    def forget_copies(self, keys: Collection[str]) -> None:
        """Drop the local copies of these phrases' objects (removed or replaced in the
        bucket, maybe by another replica)."""
        self.local.drop_keys(keys)

    def writable(self) -> bool:
        """Whether the bucket answers (blocking)."""
        try:
            self._client.head_bucket(Bucket=self.bucket.bucket)
        except (ClientError, BotoCoreError):
            return False
        return True

    def close(self) -> None:
        """Release the client's connections."""
        self._client.close()


__all__ = ["AudioStoreError", "Bucket", "LocalCache", "ObjectStore"]
