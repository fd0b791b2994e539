"""WORKERS and the readiness board, without processes: settings arithmetic and Lifecycle."""

from __future__ import annotations

from service.lifecycle import Lifecycle
from service.settings import Settings, cpu_limit


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
