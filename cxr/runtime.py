"""ONNX Runtime session options shared by the service, the benchmarks and INT8 quantisation, so
every timing and every accuracy check runs the model the way the service does.

Imports onnxruntime, so only modules that run models import this one (the web app does not).
"""

from __future__ import annotations

import ctypes
import os

import onnxruntime as ort


def session_options(intra_op_threads: int) -> ort.SessionOptions:
    """Tuned for a small CPU box shared with image decoding."""
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.intra_op_num_threads = intra_op_threads
    opts.inter_op_num_threads = 1
    # Spinning threads would steal the cores that decode the next images while ORT is idle.
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    opts.log_severity_level = 3
    return opts


# glibc mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_MALLOC_ENV = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "GLIBC_TUNABLES")


def keep_image_buffers(mmap_threshold: int = 32 << 20, trim_threshold: int = 64 << 20) -> bool:
    """Let glibc reuse the few-MB buffers every decoded image needs instead of mapping fresh
    zeroed pages from the kernel for each one (and unmapping them after).

    By default glibc serves large allocations with mmap and gives them back at free; for a
    1024-px upload that was ~950 page faults and 2.5 CPU ms of kernel time per image in a server
    process with one decoding thread. Buffers up to `mmap_threshold` now come from the heap,
    which keeps up to `trim_threshold` free bytes. Call once per process, before the work
    starts; the service and the in-process ceiling both do, so their comparison stays fair.
    False (nothing changed) off glibc or when the environment already tunes malloc."""
    if any(name in os.environ for name in _MALLOC_ENV):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        return bool(
            libc.mallopt(_M_MMAP_THRESHOLD, mmap_threshold)
            and libc.mallopt(_M_TRIM_THRESHOLD, trim_threshold)
        )
    except (OSError, AttributeError):
        return False
