"""TensorFlow process setup: quiet logs, modest threads, seeds. Call before building anything."""

from __future__ import annotations

import os


def setup_tensorflow(threads: int, seed: int) -> None:
    """Limit TF to `threads` cores (CI boxes are small and shared) and seed every RNG."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(max(1, threads // 2))
    except RuntimeError:
        pass  # already initialised in this process (tests run several trainings): keep it
    keras.utils.set_random_seed(seed)
