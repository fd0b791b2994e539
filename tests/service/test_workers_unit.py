"""WORKERS, the readiness board and connection placement, without server processes: settings
arithmetic, Lifecycle, and Balancer over real sockets in one process."""

from __future__ import annotations

import asyncio
import multiprocessing
import socket
import threading
from pathlib import Path

from service.balance import Balancer, balanced_protocol
from service.lifecycle import STATES, Lifecycle
from service.settings import Settings, cpu_limit

READY, DRAINING = STATES.index("ready"), STATES.index("draining")


def test_worker_count_defaults_to_the_cpu_limit_and_sizes_threads() -> None:
    assert Settings().worker_count() == cpu_limit() >= 1
    assert Settings(workers=3).worker_count() == 3
    two = Settings(workers=2)
    assert two.preprocess_workers() == max(1, cpu_limit() // 2)
    assert two.ort_threads() == max(1, cpu_limit() // 2)
    assert Settings(workers=1).ort_threads() == 0  # one worker: ONNX Runtime picks
    assert Settings(workers=2, ort_intra_op_threads=3, preprocess_threads=5).ort_threads() == 3
    assert Settings(workers=2, preprocess_threads=5).preprocess_workers() == 5


def test_ready_only_when_every_slot_is_ready_and_draining_anywhere_fails_everywhere() -> None:
    board = [0, 0]
    first, second = Lifecycle(board, 0), Lifecycle(board, 1)
    first.set_ready()
    assert not first.ready and "1 of 2 workers ready" in first.reason()
    second.set_ready()
    assert first.ready and second.ready
    second.begin_drain()
    assert not first.ready and "draining" in first.reason()
    assert first.state == "ready"  # it still accepts work: only readiness fails


def test_a_stop_signal_still_pending_at_the_supervisor_already_fails_readiness() -> None:
    pending = [False]
    lifecycle = Lifecycle([0], 0, stopping=lambda: pending[0])
    lifecycle.set_ready()
    assert lifecycle.ready
    pending[0] = True  # SIGTERM sent to the supervisor, not yet handled there
    assert not lifecycle.ready and "draining" in lifecycle.reason()


def test_a_new_connection_goes_to_the_least_busy_ready_peer(tmp_path: Path) -> None:
    """Balancer.place with real sockets: a TCP connection accepted by worker 0 is passed over a
    Unix socket to the least busy ready peer, which serves it (bytes sent before the pass
    included); ties stay, draining peers and peers without a channel get nothing."""
    counts = multiprocessing.get_context("spawn").Array("i", 3)
    board = [READY] * 3
    balancers = [Balancer(slot, counts, board, tmp_path) for slot in range(3)]
    served: list[int] = []

    class Upper(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.transport = transport

        def data_received(self, data: bytes) -> None:
            self.transport.write(data.upper())  # type: ignore[attr-defined]

    def adopter(slot: int):
        protocol_class = balanced_protocol(Upper, balancers[slot])

        def adopt() -> asyncio.Protocol:
            served.append(slot)
            protocol = protocol_class()
            protocol.adopted = True  # type: ignore[attr-defined]
            return protocol

        return adopt

    async def accepted(listener: socket.socket) -> tuple[socket.socket, socket.socket]:
        client = socket.create_connection(listener.getsockname())
        client.sendall(b"early")  # before anyone placed it
        server_end, _ = listener.accept()
        return client, server_end

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        for slot, balancer in enumerate(balancers):
            balancer.open(loop, adopter(slot))
        listener = socket.create_server(("127.0.0.1", 0))
        counts[:] = [2, 0, 1]
        client, server_end = await accepted(listener)
        assert balancers[0].place(server_end.fileno()) is False  # → worker 1 (0 open)
        server_end.close()  # worker 0 lets go; worker 1 holds its own descriptor
        client.setblocking(False)
        assert await asyncio.wait_for(loop.sock_recv(client, 16), 5) == b"EARLY"
        assert served == [1] and counts[:] == [2, 1, 1]

        tie_client, tie = await accepted(listener)
        counts[:] = [1, 1, 1]
        assert balancers[0].place(tie.fileno()) is True  # nobody has fewer: stays
        assert counts[:] == [2, 1, 1]

        board[1] = DRAINING
        counts[:] = [2, 0, 1]
        third_client, third = await accepted(listener)
        assert balancers[0].place(third.fileno()) is False  # not to the draining one
        for _wait in range(100):  # (clients stay referenced: a closed one would be released)
            if served == [1, 2]:
                break
            await asyncio.sleep(0.01)
        assert served == [1, 2] and counts[:] == [2, 0, 2]

        balancers[2].close()  # gone: no channel to pass through
        counts[:] = [3, 0, 1]
        fourth_client, fourth = await accepted(listener)
        assert balancers[0].place(fourth.fileno()) is True  # served here instead
        assert counts[:] == [4, 0, 1]

        client.close()  # the passed connection ends: worker 1's count goes back down
        for _wait in range(100):
            if counts[1] == 0:
                break
            await asyncio.sleep(0.01)
        assert counts[1] == 0
        for balancer in balancers:
            balancer.close()
        assert not list(tmp_path.glob("*.sock"))
        for sock in (tie_client, tie, third_client, third, fourth_client, fourth, listener):
            sock.close()

    asyncio.run(scenario())


def test_placement_goes_on_when_the_counts_lock_is_never_freed(tmp_path: Path) -> None:
    """A worker killed while holding the shared lock must not stop the others placing."""
    counts = multiprocessing.get_context("spawn").Array("i", 2)
    balancer = Balancer(0, counts, [READY, READY], tmp_path)
    taken, done = threading.Event(), threading.Event()
    deadlocked: list[bool] = []

    def holder() -> None:  # another thread (the lock is reentrant for its owner)
        with counts.get_lock():
            taken.set()
            # as if its holder had died holding it; freed only once placement went on without
            deadlocked.append(not done.wait(30))

    thread = threading.Thread(target=holder)
    thread.start()
    try:
        assert taken.wait(10)
        with socket.socket() as sock:
            assert balancer.place(sock.fileno()) is True  # no channel: served here
        assert counts.get_obj()[:] == [1, 0]  # (the wrapper's indexing would wait for the lock)
        balancer.release()
        assert counts.get_obj()[:] == [0, 0]
    finally:
        done.set()
        thread.join()
    assert deadlocked == [False]
