"""The CPU-bound part of processing a mail: parse it and cut the quoted history, off the event loop.

Mails up to ``PROCESS_LIMIT`` bytes go to a small pool of worker processes (``[inbox] parse_processes``), so
that parsing runs beside the daemon's interpreter lock rather than under it; bigger mails, and every mail when
the pool size is 0, are prepared in one thread of the daemon's own process, so a big mail is never copied
between processes. A pool process that dies (killed, out of memory) loses nothing: the pool is built again
and the mail prepared again; a mail that kills it ``POOL_ATTEMPTS`` times in a row is a failed attempt, kept
and retried like any other.
"""

from __future__ import annotations

import asyncio
import contextvars
import ctypes
import multiprocessing
import os
import select
import signal
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from functools import partial

import structlog

from mailticketd.mail.parse import IncomingMail, parse_mail, parse_mail_chunks
from mailticketd.mail.reply import new_text, visible_text

log = structlog.get_logger("mailticketd.inbox")

# Above this size the mail stays in the daemon's process (a thread): the same size past which the parser
# reads a mail in chunks to bound its memory (mail/parse.py).
PROCESS_LIMIT = 1 << 20
POOL_ATTEMPTS = 3
# At most this many mails go to the pool in one task: a task's mails are ready only when its last one is, and the
# first of them is what the inbox waits for.
CHUNK = 8
# Memory blocks from this size on are mapped for each allocation and given back to the system when freed.
BIG_BLOCK = 1 << 20
_M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter


@dataclass(frozen=True)
class PreparedMail:
    """What the CPU-bound part makes of the raw bytes, outside any database lock."""

    mail: IncomingMail
    visible_text: str
    new_text: str


def prepare(raw: bytes | Callable[[], Iterable[bytes]], whole: bool = False) -> PreparedMail:
    """Parse once and cut the quoted history (``whole``: keep all, as for text typed into the web form).  A big
    mail comes as its stored pieces (``raw()``), never whole."""
    mail = parse_mail(raw) if isinstance(raw, bytes) else parse_mail_chunks(raw)
    if whole:
        text = mail.text.strip()
        return PreparedMail(mail, text, text)
    # The visible text is the new text, unless nothing looked new: then it falls back to the whole mail. The
    # quote cutter is the dearest part of a mail's processing; it runs twice only for such mails.
    new = new_text(mail.text)
    return PreparedMail(mail, new or visible_text(mail.text), new)


def prepare_all(items: list[tuple[bytes, bool]]) -> list[PreparedMail | Exception]:
    """``prepare`` for several mails in one task of the pool; a mail that fails gives its error, not the others'."""
    prepared: list[PreparedMail | Exception] = []
    for raw, whole in items:
        try:
            prepared.append(prepare(raw, whole))
        except Exception as error:  # parse_mail never raises; anything else is this mail's alone
            prepared.append(error)
    return prepared


def return_big_blocks() -> None:
    """Have the C allocator give every block of ``BIG_BLOCK`` bytes or more back when it is freed (glibc).

    By default glibc raises its threshold for mapping a block to the size of the biggest block freed, so after
    one big mail the copies of the next (its text, its UTF-8, SQLite's record, each made in another thread) came
    from the allocator's heaps and stayed there: the daemon's RSS grew by their sum rather than by what it held at
    once, and kept it.  Ordinary mails make no block that big.  Elsewhere (another C library) nothing changes."""
    mallopt = getattr(ctypes.CDLL(None), "mallopt", None)
    if mallopt is not None:
        mallopt(_M_MMAP_THRESHOLD, BIG_BLOCK)


class PoolLost(RuntimeError):
    """The parse process died on this mail every time it was tried."""


def _start_worker(daemon: int) -> None:
    """Set up a pool process: it lives exactly as long as the daemon ``daemon`` (a process id) needs it."""
    # Ctrl-C (to the whole process group) is for the daemon: it closes the pool itself once the mail in hand is
    # done. SIGTERM ends a pool process (the pool sends it to the others when one has died).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    threading.Thread(target=_exit_with, args=(daemon,), name="watch-daemon", daemon=True).start()


def _exit_with(daemon: int) -> None:
    """End this process when the daemon ends without closing the pool (kill -9, a crash): nothing else would."""
    try:
        handle = os.pidfd_open(daemon)
    except ProcessLookupError:
        os._exit(0)
    except OSError:  # no pidfd (old kernel, a filter): look once a second
        while True:
            time.sleep(1)
            try:
                os.kill(daemon, 0)
            except ProcessLookupError:
                os._exit(0)
            except PermissionError:
                pass
    select.select([handle], [], [])  # readable once the daemon has ended
    os._exit(0)


def _context() -> multiprocessing.context.BaseContext:
    # A fork server forks pool processes from a small clean process that has the parser imported: quick to
    # start, and unlike fork, nothing of the daemon (sockets, locks, database) is inherited.
    if "forkserver" in multiprocessing.get_all_start_methods():
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload([__name__])
        return context
    return multiprocessing.get_context("spawn")


class Preparer:
    """Prepare mails in the pool of processes or, for big ones, in one thread; ``close`` ends both."""

    def __init__(self, processes: int) -> None:
        return_big_blocks()  # a big mail is prepared and stored in this process
        self.processes = processes
        # One thread, so big mails are parsed in order and never two at once beside the event loop.
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="inbox-prepare")
        self._pool: ProcessPoolExecutor | None = None
        self._chunks: set[asyncio.Task[None]] = set()  # tasks of several mails (``start``) not done yet
        self.pools_built = 0
        self.pooled_mails = 0  # mails handed to the pool (``start``)
        self.losses = 0  # mails whose pool process died under them (each parsed again)

    def resize(self, processes: int) -> None:
        """Use ``processes`` pool processes from the next mail on (after a reload)."""
        if processes != self.processes:
            self.processes = processes
            self._drop_pool()

    async def warm(self) -> None:
        """Start the pool's processes now rather than with the first mail, in a thread: starting them (the fork
        server, the imports) takes a good part of a second, which a storm after a restart would otherwise wait for,
        and the event loop would be held for while the fork server answers."""
        if self.processes < 1:
            return
        pool = self._current_pool()
        try:
            await asyncio.to_thread(lambda: pool.submit(os.getpid).result())
        except Exception as error:  # the first mail builds the pool again
            log.warning("inbox.parse_processes_not_started", error=f"{type(error).__name__}: {error}")

    def pooled(self, raw: bytes | Callable[[], Iterable[bytes]]) -> bool:
        """Whether this mail is parsed in the pool (else in the thread)."""
        return self.processes >= 1 and isinstance(raw, bytes) and len(raw) <= PROCESS_LIMIT

    def start(self, items: Sequence[tuple[bytes, bool]]) -> list[asyncio.Future[PreparedMail]]:
        """Start preparing ``items`` (mails for the pool, with ``whole``) in the background; a future each, in order.

        They go to the pool as one task per pool process rather than one task a mail: each task costs the daemon's
        interpreter a wake-up of the pool's two threads and a hand-over of its lock.  A task holds at most ``CHUNK``
        mails, so the first mails are ready while the pool still works on the later ones.  When a pool process dies
        under a task, its mails are prepared again one by one (``prepare``), so a mail that kills the pool fails
        alone.
        """
        loop = asyncio.get_running_loop()
        futures: list[asyncio.Future[PreparedMail]] = [loop.create_future() for _ in items]
        self.pooled_mails += len(items)
        # At most CHUNK mails a task; fewer, so that every process gets work, when there are few.
        share = max(1, min(CHUNK, -(-len(items) // max(1, self.processes))))
        for first in range(0, len(items), share):
            chunk = [(index, *items[index]) for index in range(first, min(first + share, len(items)))]
            task = asyncio.create_task(self._prepare_chunk(chunk, futures))
            self._chunks.add(task)
            task.add_done_callback(self._chunks.discard)
        return futures

    async def _prepare_chunk(self, chunk: list[tuple[int, bytes, bool]],
                             futures: list[asyncio.Future[PreparedMail]]) -> None:
        loop = asyncio.get_running_loop()
        pool = self._current_pool()
        try:
            results = await loop.run_in_executor(pool, prepare_all, [(raw, whole) for _, raw, whole in chunk])
        except asyncio.CancelledError:  # the daemon stops: the rows stay pending
            for index, _, _ in chunk:
                futures[index].cancel()
            raise
        except Exception as error:
            # A process died under the task (or its result could not come back whole): each mail is prepared
            # again on its own, so only a mail that is itself at fault fails.
            if isinstance(error, BrokenProcessPool):
                self.losses += 1
                log.warning("inbox.parse_process_lost", attempt=1, of=POOL_ATTEMPTS, mails=len(chunk))
                if pool is self._pool:
                    self._drop_pool()
            for index, raw, whole in chunk:
                if futures[index].done():  # dropped meanwhile (the daemon stops)
                    continue
                try:
                    _settle(futures[index], await self.prepare(raw, whole=whole))
                except Exception as failure:
                    _settle(futures[index], failure)
            return
        for (index, _, _), result in zip(chunk, results):
            _settle(futures[index], result)

    async def prepare(self, raw: bytes | Callable[[], Iterable[bytes]], *, whole: bool) -> PreparedMail:
        """``raw``: the mail's bytes, or for a big one a function giving its stored pieces (parsed in the thread)."""
        loop = asyncio.get_running_loop()
        if not self.pooled(raw):
            context = contextvars.copy_context()  # the parser's log lines name the mail
            return await loop.run_in_executor(self._thread, partial(context.run, prepare, raw, whole))
        for attempt in range(1, POOL_ATTEMPTS + 1):
            pool = self._current_pool()
            try:
                return await loop.run_in_executor(pool, prepare, raw, whole)
            except BrokenProcessPool:
                self.losses += 1
                log.warning("inbox.parse_process_lost", attempt=attempt, of=POOL_ATTEMPTS)
                if pool is self._pool:  # the first mail to notice builds a new pool; the others use it
                    self._drop_pool()
        raise PoolLost(f"the parse process died {POOL_ATTEMPTS} times on this mail")

    def _current_pool(self) -> Executor:
        if self._pool is None:
            self._pool = ProcessPoolExecutor(max_workers=self.processes, mp_context=_context(),
                                             initializer=_start_worker, initargs=(os.getpid(),))
            self.pools_built += 1
        return self._pool

    def _drop_pool(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:  # mails already handed to it still finish there (a broken one has failed them)
            pool.shutdown(wait=False)

    def process_ids(self) -> list[int]:
        """The pool's processes now (for the operator's and the tests' eyes)."""
        pool = self._pool
        return [process.pid for process in (pool._processes or {}).values() if process.pid] if pool else []

    async def close(self) -> None:
        """Let the work in hand finish and end the pool's processes and the thread."""
        for task in list(self._chunks):
            task.cancel()
        await asyncio.gather(*self._chunks, return_exceptions=True)
        pool, self._pool = self._pool, None
        loop = asyncio.get_running_loop()
        if pool is not None:
            await loop.run_in_executor(None, partial(pool.shutdown, wait=True, cancel_futures=True))
        await loop.run_in_executor(None, partial(self._thread.shutdown, wait=True, cancel_futures=True))


def _settle(future: asyncio.Future[PreparedMail], result: PreparedMail | Exception) -> None:
    if future.done():  # cancelled meanwhile: the daemon stops, the row stays pending
        return
    if isinstance(result, Exception):
        future.set_exception(result)
    else:
        future.set_result(result)
