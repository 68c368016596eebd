"""Where a run's results go: a local folder, or a bucket (`s3://`, `gs://`, `az://`) with a local
folder as its cache. Both give the same two things: a `VideoStore` and the open ledger.

For a bucket, `open_ledger` takes the prefix's lease, pulls the ledger into the cache, and while the
run lives sends its new lines every second and renews the lease (`store.mirror`, `store.lease`);
at the end it leaves one snapshot and gives the lease back. A bucket that refuses before anything
is sent is a FolderUnusable (exit 2); one that fails later costs nothing created: the lines stay
in the cache until they can be sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from batch_engine.config import Config
from batch_engine.store.bucket import Bucket, BucketError, BucketURL, open_bucket
from batch_engine.store.bucket_videos import BucketVideos
from batch_engine.store.lease import LEASE_SECONDS, Lease, LeaseHeld, LeaseLost
from batch_engine.store.ledger import LEDGER_NAME, FolderUnusable, Ledger, LedgerError, LedgerLocked
from batch_engine.store.mirror import Mirror, ledger_bytes, ledger_parts
from batch_engine.store.replay import Replayed, replay
from batch_engine.store.videos import LocalVideos, VideoStore

SYNC_SECONDS = 1.0   # how often a bucket run sends its new ledger lines
log = logging.getLogger(__name__)


def default_cache(url: BucketURL, environ: Mapping[str, str]) -> Path:
    base = Path(environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "batch-engine" / url.scheme / url.bucket / (url.prefix or "_")


def resolve_out(out: str, cache: str | None, environ: Mapping[str, str] = os.environ) -> tuple[str, Path]:
    """What `--out` names (a folder, or a bucket URL as written) and the folder of the ledger
    (the folder itself, or the bucket's cache). ValueError for a bucket URL that cannot be one,
    or --cache without a bucket."""
    url = BucketURL.parse(out)
    if url is None:
        if cache:
            raise ValueError("--cache is for a bucket --out (s3://, gs://, az://); a local --out is its own folder")
        return out, Path(out)
    return str(url), Path(cache) if cache else default_cache(url, environ)


@dataclass(frozen=True, slots=True)
class Output:
    out: str        # as the user named it: a folder, or a bucket URL
    folder: Path    # the ledger's folder: the output folder, or the bucket's cache

    @property
    def url(self) -> BucketURL | None:
        return BucketURL.parse(self.out)

    @classmethod
    def of(cls, config: Config) -> Output:
        return cls(config.out, config.out_dir)

    def __str__(self) -> str:
        return self.out

    def has_ledger(self) -> bool:
        """Whether there is a ledger to resume (one LIST for a bucket, nothing read)."""
        if self.url is None:
            return (self.folder / LEDGER_NAME).exists()
        try:
            return bool(ledger_parts(self.bucket())[0])
        except BucketError as e:
            raise LedgerError(f"cannot read the ledger in {self.out}: {e}") from None

    def bucket(self) -> Bucket:
        url = self.url
        assert url is not None
        return open_bucket(url)

    def videos(self) -> VideoStore:
        """Raises FolderUnusable when the bucket's client cannot be made (nothing sent)."""
        if self.url is None:
            return LocalVideos(self.folder)
        try:
            return BucketVideos(self.bucket())
        except BucketError as e:
            raise FolderUnusable(f"cannot use {self.out}: {e}") from None

    def read_ledger(self) -> Replayed | None:
        """The ledger as it stands, read without the lease (None: there is none)."""
        from batch_engine.store.ledger import read_ledger
        if self.url is None:
            if not (self.folder / LEDGER_NAME).exists():
                return None
            return read_ledger(self.folder)
        try:
            data = ledger_bytes(self.bucket())
        except BucketError as e:
            raise LedgerError(f"cannot read the ledger in {self.out}: {e}") from None
        if data is None:
            return None
        import io
        return replay(io.BytesIO(data))

    @contextlib.asynccontextmanager
    async def open_ledger(self, videos: VideoStore, *, lease_seconds: float = LEASE_SECONDS) -> AsyncIterator[Ledger]:
        """The ledger, open and locked for a run (for a bucket: leased and mirrored)."""
        if not isinstance(videos, BucketVideos):
            with Ledger(self.folder) as ledger:
                yield ledger
            return
        bucket = videos.bucket
        lease = Lease(bucket, seconds=lease_seconds)
        try:
            await asyncio.to_thread(lease.take)
        except LeaseHeld as e:
            raise LedgerLocked(str(e)) from None
        except BucketError as e:
            raise FolderUnusable(f"cannot use {self.out}: {e}") from None
        try:
            async with _mirrored(self, bucket, lease) as ledger:
                yield ledger
        finally:
            with contextlib.suppress(BucketError):
                await asyncio.to_thread(lease.release)


@contextlib.asynccontextmanager
async def _mirrored(output: Output, bucket: Bucket, lease: Lease) -> AsyncIterator[Ledger]:
    mirror = Mirror(bucket, output.folder, LEDGER_NAME)
    try:
        await asyncio.to_thread(mirror.pull)
    except (BucketError, OSError) as e:
        raise FolderUnusable(f"cannot read the ledger in {output.out}: {e}") from None
    begun = False
    try:
        with Ledger(output.folder) as ledger:
            try:
                await asyncio.to_thread(mirror.begin)
            except BucketError as e:
                raise FolderUnusable(f"cannot write the ledger in {output.out}: {e}") from None
            begun = True
            async with _kept(mirror, lease, output) as lost:
                try:
                    yield ledger
                except asyncio.CancelledError:
                    run = asyncio.current_task()
                    if lost and run is not None and run.uncancel() == 0:
                        raise LedgerError(f"{lost[0]}; this run stopped sending (its ledger is in the bucket)") from None
                    raise
    finally:  # also when interrupted: the next run reads one snapshot, with the folder's hints
        if begun:
            try:
                await asyncio.to_thread(mirror.end)
            except BucketError as e:  # the segments hold every line: the snapshot can wait
                log.warning("could not write the ledger's snapshot to %s (%s); its lines are all there", output.out, e)


@contextlib.asynccontextmanager
async def _kept(mirror: Mirror, lease: Lease, output: Output) -> AsyncIterator[list[LeaseLost]]:
    """While the body runs: the ledger sent every second and the lease renewed (`_keep`); after
    it, the last lines sent, or kept in the cache when the bucket will not take them."""
    lost: list[LeaseLost] = []
    keeper = asyncio.create_task(_keep(mirror, lease, asyncio.current_task(), lost))
    try:
        yield lost
    finally:
        keeper.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await keeper
        try:
            await asyncio.to_thread(mirror.sync)
        except BucketError as e:
            mirror.keep_unsent()
            log.error("the ledger's last lines could not be sent to %s (%s); they are kept in %s and "
                      "sent by the next run with --cache %s", output.out, e, output.folder, output.folder)


async def _keep(mirror: Mirror, lease: Lease, run: asyncio.Task | None, lost: list[LeaseLost]) -> None:
    """Every second: send the new ledger lines; every third of the lease: renew it."""
    loop = asyncio.get_running_loop()
    renew_at = loop.time() + lease.seconds / 3
    failing = False
    while True:
        await asyncio.sleep(SYNC_SECONDS)
        try:
            await asyncio.to_thread(mirror.sync)
            if loop.time() >= renew_at:
                await asyncio.to_thread(lease.renew)
                renew_at = loop.time() + lease.seconds / 3
            if failing:
                log.warning("the bucket %s answers again; the ledger is up to date there", mirror.bucket.url)
            failing = False
        except LeaseLost as e:
            log.error("%s: stopping", e)
            lost.append(e)
            if run is not None:
                run.cancel()
            return
        except BucketError as e:
            if not failing:
                log.warning("the bucket %s fails (%s); the ledger's new lines wait in %s and are sent when it "
                            "answers", mirror.bucket.url, e, mirror.cache)
            failing = True
