"""Least-connections placement of new connections across the worker processes.

Every worker binds the port with SO_REUSEPORT (service/workers.py) and the kernel picks the
worker of a new connection by a hash of its addresses. With many connections that evens out;
with few long-lived ones (a PACS router, the web gateway's pool, a client with four keep-alive
connections) it often does not: four connections all land on one worker of two one time in
eight, and that worker then does all the work with one core while the other idles (measured:
129 and 139 instead of ~230 images/s, docs/performance.md).

So each worker counts the connections it serves in its slot of a shared, locked array. When a
connection arrives at a worker that already serves more than the least busy ready peer, the
worker passes the socket to that peer before reading a byte of it (SCM_RIGHTS over a Unix
datagram socket in the supervisor's private folder), and the peer serves it exactly as if it had
accepted it. A connection is passed at most once. When passing fails (the peer is gone or
restarting, its queue is full) the worker serves the connection itself: nothing is refused.

Connections are placed, never moved: a peer whose connections all closed gets the next new ones.
`CONNECTION_BALANCE=false` leaves placement to the kernel's hash alone.
"""

from __future__ import annotations

import array
import asyncio
import logging
import os
import socket
from collections.abc import Callable, Sequence
from multiprocessing.sharedctypes import SynchronizedArray
from pathlib import Path
from typing import Any, Protocol

from service.lifecycle import STATES

logger = logging.getLogger("service.balance")
READY = STATES.index("ready")
_STREAM_FAMILIES = (socket.AF_INET, socket.AF_INET6)
LOCK_WAIT_S = 0.05  # the lock is held for a few microseconds; longer means its holder died


class ConnectionObserver(Protocol):
    def connections_changed(self, open_here: int) -> None: ...

    def connection_passed(self) -> None: ...


class _Held:
    """The counts' lock, but never waited for long: a worker killed while holding it (SIGKILL,
    the OOM killer) would otherwise stop every other worker's event loop for good. Past the
    wait the update goes ahead unlocked; the counts steer placement, nothing depends on them
    being exact (a lost update only skews where the next connections go)."""

    __slots__ = ("_held", "_lock")

    def __init__(self, counts: SynchronizedArray[Any]) -> None:
        self._lock = counts.get_lock()
        self._held = False

    def __enter__(self) -> None:
        self._held = self._lock.acquire(timeout=LOCK_WAIT_S)
        if not self._held:
            logger.warning("connection counts lock not free after %g s: going on", LOCK_WAIT_S)

    def __exit__(self, *exc: object) -> None:
        if self._held:
            self._lock.release()


def channel_path(folder: Path, slot: int) -> Path:
    """Where worker `slot` receives the connections passed to it."""
    return folder / f"worker-{slot}.sock"


class Balancer:
    """One worker's side: where its new connections go, and the ones passed to it."""

    def __init__(
        self,
        slot: int,
        counts: SynchronizedArray[Any],
        board: Sequence[int],
        folder: Path,
    ) -> None:
        self.slot = slot
        self.counts = counts  # open connections per worker slot; written under counts' lock
        self.board = board  # worker states (service/lifecycle.py): only ready peers get any
        self.folder = folder
        self.observer: ConnectionObserver | None = None
        self._channel: socket.socket | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._adopt: Callable[[], asyncio.Protocol] | None = None
        self._pending: set[asyncio.Task[Any]] = set()

    # --- the worker's channel -------------------------------------------------------------

    def open(self, loop: asyncio.AbstractEventLoop, adopt: Callable[[], asyncio.Protocol]) -> None:
        """Start taking connections from peers; `adopt` makes the protocol that serves one."""
        path = channel_path(self.folder, self.slot)
        channel = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            path.unlink(missing_ok=True)  # a replaced worker's
            channel.bind(str(path))
        except OSError as exc:  # e.g. a path longer than a Unix socket address may be
            channel.close()
            logger.warning("connection balancing off in this worker: %s (%s)", exc, path)
            return
        channel.setblocking(False)
        self._channel, self._loop, self._adopt = channel, loop, adopt
        loop.add_reader(channel.fileno(), self._receive)

    def close(self) -> None:
        """Stop taking connections from peers (shutdown); any still queued are closed."""
        channel, self._channel = self._channel, None
        if channel is None:
            return
        assert self._loop is not None
        self._loop.remove_reader(channel.fileno())
        for fd in self._queued(channel):
            os.close(fd)
            self.release()
        channel.close()
        channel_path(self.folder, self.slot).unlink(missing_ok=True)

    # --- placement ------------------------------------------------------------------------

    def place(self, fd: int) -> bool:
        """A connection this worker accepted: True = serve it here (counted here), False = it
        was passed to a less busy peer (counted there) and this worker must let go of it."""
        counts = self.counts.get_obj()  # raw: the wrapper's own indexing takes the lock again
        with _Held(self.counts):
            mine = counts[self.slot]
            target = None
            for peer in range(len(counts)):
                if peer == self.slot or self.board[peer] != READY or counts[peer] >= mine:
                    continue
                if target is None or counts[peer] < counts[target]:
                    target = peer
            if target is not None and self._pass(target, fd):
                counts[target] += 1
                passed = True
            else:
                counts[self.slot] = mine + 1
                passed = False
            here = counts[self.slot]
        if self.observer is not None:
            if passed:
                self.observer.connection_passed()
            else:
                self.observer.connections_changed(here)
        return not passed

    def joined(self) -> None:
        """A connection passed here is being served (the peer counted it here)."""
        if self.observer is not None:
            self.observer.connections_changed(self.counts.get_obj()[self.slot])

    def release(self) -> None:
        """A connection served here closed."""
        counts = self.counts.get_obj()
        with _Held(self.counts):
            counts[self.slot] = here = max(0, counts[self.slot] - 1)
        if self.observer is not None:
            self.observer.connections_changed(here)

    def _pass(self, peer: int, fd: int) -> bool:
        if self._channel is None:
            return False
        try:
            # sendmsg, not socket.send_fds: that one ignores its address argument (3.11)
            rights = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [fd]))]
            self._channel.sendmsg([b"c"], rights, 0, str(channel_path(self.folder, peer)))
        except OSError as exc:  # gone, restarting (no socket bound), queue full (EAGAIN)
            logger.debug("could not pass a connection to worker %d: %s", peer, exc)
            return False
        return True

    # --- connections passed to this worker ------------------------------------------------

    @staticmethod
    def _queued(channel: socket.socket) -> list[int]:
        fds: list[int] = []
        while True:
            try:
                _, received, _, _ = socket.recv_fds(channel, 16, 4)
            except (BlockingIOError, InterruptedError):
                return fds
            except OSError as exc:
                logger.warning("connection channel: %s", exc)
                return fds
            fds.extend(received)

    def _receive(self) -> None:
        assert self._channel is not None and self._loop is not None and self._adopt is not None
        for fd in self._queued(self._channel):
            try:
                sock = socket.socket(fileno=fd)
            except OSError:
                os.close(fd)
                self.release()
                continue
            if sock.type != socket.SOCK_STREAM or sock.family not in _STREAM_FAMILIES:
                sock.close()  # not a TCP connection: nothing a peer would pass
                self.release()
                continue
            task = self._loop.create_task(self._loop.connect_accepted_socket(self._adopt, sock))
            self._pending.add(task)
            task.add_done_callback(self._adopted)

    def _adopted(self, task: asyncio.Task[Any]) -> None:
        self._pending.discard(task)
        if task.cancelled() or task.exception() is not None:
            # the protocol never saw the connection, so it will not release it
            if not task.cancelled():
                logger.warning("could not serve a passed connection: %r", task.exception())
            self.release()


def balanced_protocol(base: type[asyncio.Protocol], balancer: Balancer) -> type[asyncio.Protocol]:
    """`base` (uvicorn's HTTP protocol) placing each accepted connection with `balancer`."""

    class Balanced(base):  # type: ignore[valid-type,misc]
        adopted = False  # passed here by a peer: serve it, never pass it on
        _counted = False

        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            if not self.adopted:
                sock = transport.get_extra_info("socket")
                if sock is not None and not balancer.place(sock.fileno()):
                    transport.abort()  # only our descriptor closes: the peer holds its own
                    return
            else:
                balancer.joined()
            self._counted = True
            super().connection_made(transport)

        def connection_lost(self, exc: Exception | None) -> None:
            if not self._counted:
                return  # passed to a peer: this protocol never served it
            self._counted = False
            balancer.release()
            super().connection_lost(exc)

    Balanced.__name__ = Balanced.__qualname__ = f"Balanced{base.__name__}"
    return Balanced
