"""ONNX Runtime session options shared by the service, the benchmarks and INT8 quantisation, so
every timing and every accuracy check runs the model the way the service does.

Imports onnxruntime, so only modules that run models import this one (the web app does not).
"""

from __future__ import annotations

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
