"""Serve an app factory with uvicorn under cProfile; the stats are written when uvicorn shuts down.

    python -m bench.profiled bench.servers:subject_app PORT OUT.prof
"""

import cProfile
import signal
import sys

import uvicorn


def main() -> None:
    target, port, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    # uvicorn restores this handler after its graceful shutdown and re-raises SIGTERM to it.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    profiler = cProfile.Profile()
    profiler.enable()
    try:
        uvicorn.run(target, factory=True, host="127.0.0.1", port=port, workers=1, access_log=False, log_level="warning")
    finally:
        profiler.disable()
        profiler.dump_stats(out)


if __name__ == "__main__":
    main()
