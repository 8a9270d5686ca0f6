"""Helpers of the webhook tests: a real local HTTP receiver and the documented signature check."""

import hashlib
import hmac
import http.server
import threading
import time


def verify(secret: str, header: str, body: bytes, tolerance: int = 300) -> bool:
    """The receiver-side check documented in docs/live.md ("Request format")."""
    parts = dict(p.split("=", 1) for p in header.split(","))
    t, v1 = parts.get("t", ""), parts.get("v1", "")
    if not t.isdigit() or abs(time.time() - int(t)) > tolerance:
        return False
    expected = hmac.new(secret.encode(), t.encode() + b"." + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, v1)


class Receiver:
    """A threaded ``http.server`` on 127.0.0.1 that records every POST (headers, raw body) and answers:
    500 to the first ``fail_first`` requests (all of them when ``always_fail``), 200 afterwards; with
    ``hang`` set it holds each request until :meth:`release` (or ``hang_limit`` seconds) before answering."""

    def __init__(self, *, fail_first: int = 0, always_fail: bool = False, hang: bool = False, hang_limit: float = 30) -> None:
        self.fail_first = fail_first
        self.always_fail = always_fail
        self.hang = hang
        self.hang_limit = hang_limit
        self.released = threading.Event()
        self.arrived = threading.Event()
        self.received: list[tuple[dict[str, str], bytes]] = []
        self.in_flight = 0  # requests being held or answered right now
        self._lock = threading.Lock()
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers["Content-Length"]))
                with outer._lock:
                    outer.received.append((dict(self.headers), body))
                    n = len(outer.received)
                    outer.in_flight += 1
                outer.arrived.set()
                try:
                    if outer.hang:
                        outer.released.wait(outer.hang_limit)
                    code = 500 if outer.always_fail or n <= outer.fail_first else 200
                    self.send_response(code)
                    self.send_header("Content-Length", "2")
                    self.end_headers()
                    self.wfile.write(b"ok")
                except OSError:  # the client gave up (timeout)
                    pass
                finally:
                    with outer._lock:
                        outer.in_flight -= 1

            def log_message(self, *a: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def release(self) -> None:
        self.released.set()

    def close(self) -> None:
        self.release()
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self) -> "Receiver":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
