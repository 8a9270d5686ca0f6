"""Graceful shutdown: SIGTERM turns /readyz unready while the server still serves, then in-flight
requests finish; a rolling restart of two workers behind a health-checking balancer loses no request."""

import json
import signal
import threading
import time
import urllib.error
import urllib.request

from live_server import LiveServer

ENV = {"JINGTAN_OPERATIONS__SHUTDOWN_DRAIN_SECONDS": "1.0"}
QUERY = json.dumps({"query": "{ merchants(first: 5) { totalCount } }"}).encode()


def _get(port: int, path: str) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
            return r.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return 0


def _query(port: int) -> bool:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/graphql", data=QUERY,
        headers={"Content-Type": "application/json", "Connection": "close"},
    )
    with urllib.request.urlopen(request, timeout=20) as r:
        body = json.loads(r.read())
    return r.status == 200 and "errors" not in body and body["data"]["merchants"]["totalCount"] >= 0


def test_sigterm_turns_unready_first_then_exits(db_url, tmp_path):
    server = LiveServer(db_url, tmp_path, env=ENV).start()
    try:
        assert _get(server.port, "/readyz") == 200
        server.proc.send_signal(signal.SIGTERM)
        time.sleep(0.2)
        assert _get(server.port, "/readyz") == 503  # the balancer takes it out...
        assert _query(server.port)                 # ...while it still answers
        server.proc.wait(timeout=30)
        assert _get(server.port, "/healthz") == 0  # gone: nothing listens any more
        assert "Traceback" not in server.log()
    finally:
        server.stop()


def test_rolling_restart_of_two_workers_loses_no_request(db_url, tmp_path):
    servers = [LiveServer(db_url, tmp_path, env=ENV).start(), LiveServer(db_url, tmp_path, env=ENV).start()]
    ports = [s.port for s in servers]
    healthy = set(ports)
    lock = threading.Lock()
    stop = threading.Event()
    results = {"ok": 0, "lost": [], "unready_seen": 0}

    def balancer() -> None:  # health checks every 50 ms, as a load balancer would (faster)
        while not stop.is_set():
            for port in ports:
                ready = _get(port, "/readyz") == 200
                with lock:
                    if ready:
                        healthy.add(port)
                    else:
                        if port in healthy:
                            results["unready_seen"] += 1
                        healthy.discard(port)
            time.sleep(0.05)

    def client(n: int) -> None:
        i = n
        deadline = time.monotonic() + 120  # bounded, whatever happens
        while not stop.is_set() and time.monotonic() < deadline:
            with lock:
                choices = sorted(healthy)
            if not choices:
                time.sleep(0.01)
                continue
            port = choices[i % len(choices)]
            i += 1
            try:
                ok = _query(port)
            except Exception as exc:  # noqa: BLE001 - a lost request, recorded
                ok = False
                results["lost"].append(f"{port}: {type(exc).__name__}: {exc}")
            if ok:
                with lock:
                    results["ok"] += 1
            time.sleep(0.005)

    threads = [threading.Thread(target=balancer)] + [threading.Thread(target=client, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    try:
        time.sleep(1.0)
        for index in range(2):
            old = servers[index]
            old.stop()  # SIGTERM and wait: drain, stop accepting, finish in-flight, close the pool
            assert old.proc.returncode is not None
            servers[index] = LiveServer(db_url, tmp_path, env=ENV, port=old.port).start()
            deadline = time.monotonic() + 30
            while old.port not in healthy and time.monotonic() < deadline:
                time.sleep(0.05)
            assert old.port in healthy
            time.sleep(0.5)
        served_before_end = results["ok"]
        time.sleep(0.5)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=60)
        for server in servers:
            server.stop()
    assert results["lost"] == [], results["lost"][:5]
    assert results["unready_seen"] >= 2  # each worker left the pool through /readyz before it stopped
    assert served_before_end >= 50 and results["ok"] > served_before_end


def test_in_flight_request_finishes_after_sigterm(db_url, tmp_path):
    """A slow request (argon2 with real costs: about a second) is answered although SIGTERM arrives while
    it runs and the server stops accepting at once (no drain)."""
    env = {"JINGTAN_OPERATIONS__SHUTDOWN_DRAIN_SECONDS": "0", "JINGTAN_AUTH__ARGON2_TIME_COST": "12",
           "JINGTAN_AUTH__ARGON2_MEMORY_COST_KIB": "65536"}
    server = LiveServer(db_url, tmp_path, env=env).start()
    answer: dict = {}
    register = json.dumps({
        "query": "mutation($i: RegisterInput!) { register(input: $i) { user { id } userErrors { code } } }",
        "variables": {"i": {"email": "slow-signup@example.cn", "password": "Green-leaf-2026",
                            "displayName": "慢 Slow"}},
    }).encode()

    def send() -> None:
        request = urllib.request.Request(f"http://127.0.0.1:{server.port}/graphql", data=register,
                                         headers={"Content-Type": "application/json", "Connection": "close"})
        started = time.monotonic()
        with urllib.request.urlopen(request, timeout=60) as r:
            answer["status"], answer["body"] = r.status, json.loads(r.read())
        answer["started"], answer["finished"] = started, time.monotonic()

    try:
        thread = threading.Thread(target=send)
        thread.start()
        time.sleep(0.3)  # the request is being hashed
        answer["signalled"] = time.monotonic()
        server.proc.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        assert _get(server.port, "/healthz") == 0  # no longer accepting...
        thread.join(timeout=60)
        server.proc.wait(timeout=60)
    finally:
        server.stop()
    assert answer["status"] == 200, answer  # ...but the request in flight was answered
    payload = answer["body"]["data"]["register"]
    assert payload["userErrors"] == [] and payload["user"]["id"]
    # it really was in flight when the signal came: sent before SIGTERM, answered after it
    assert answer["started"] < answer["signalled"] < answer["finished"]
