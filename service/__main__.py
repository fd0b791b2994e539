"""`python -m service`: the API under uvicorn, one process or WORKERS of them, draining SIGTERM."""

from __future__ import annotations

import logging
import sys

from service.settings import LOG_FORMAT, ConfigError, load_settings


def main() -> int:
    """Entry point; returns the process exit code (2: bad setting, 3: model refused)."""
    try:
        settings = load_settings()
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(level=settings.log_level, format=LOG_FORMAT)
    if settings.worker_count() > 1:
        from service.workers import supervise

        return supervise(settings)
    from service.lifecycle import Lifecycle
    from service.server import run_server

    return run_server(settings, Lifecycle())


if __name__ == "__main__":
    sys.exit(main())
