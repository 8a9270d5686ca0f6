"""A small, cheap HTTP/1.1 keep-alive load generator (runs as its own process).

Every connection sends the same pre-encoded request (optionally with a fixed-width unique token spliced
into the body wherever the placeholder occurs, e.g. an idempotency key and a receipt id, and optionally
cycling through a list of header variants, e.g. one JWT per member), reads the status line and headers, and then exactly
``Content-Length`` body bytes. Nothing else is parsed on the hot path, so the client costs a few tens of
microseconds per request and the server under test stays the bottleneck.

Checks: every response must be ``200`` with a Content-Length; with ``--check-graphql`` the body must not
contain ``"errors"``; with ``--expect BYTES`` (repeatable) it must contain BYTES. The first body of every connection
is also parsed as JSON. Any failure stops the run with exit code 1 and prints the offending body.

Only 127.0.0.1 is accepted as target. The run stops by itself after ``warmup + duration`` seconds, or, with
``--requests N``, once N requests (over all connections, warm-up included) have been answered — whichever
comes first (the memory scenario sends exact counts; ``duration`` is then a safety cap).

    python -m bench.loadgen --port 8000 --request-file req.json --concurrency 16 --duration 5 --warmup 1
"""

import argparse
import os
import asyncio
import json
import sys
import time

TOKEN_PLACEHOLDER = b"@@UNIQUE@@"
TOKEN_WIDTH = 16  # bytes spliced in place of the placeholder: <2-digit conn><14-digit counter>


class CheckFailed(Exception):
    pass


def build_request(spec: dict, port: int) -> tuple[list[bytes], list[bytes]]:
    """Return the request heads (one per header variant) and the body split at the placeholders.

    Every occurrence of the placeholder gets the same token (e.g. an idempotency key and a receipt id).
    ``spec["header_variants"]`` (optional) is a list of header dicts; consecutive requests cycle through
    them (e.g. one JWT per member) on top of ``spec["headers"]``."""
    body = spec["body"].encode()
    pieces = body.split(TOKEN_PLACEHOLDER)
    length = len(body) - (len(pieces) - 1) * (len(TOKEN_PLACEHOLDER) - TOKEN_WIDTH)
    heads = []
    for variant in spec.get("header_variants") or [{}]:
        headers = [
            f"{spec.get('method', 'POST')} {spec['path']} HTTP/1.1",
            f"Host: 127.0.0.1:{port}",
            "Content-Type: application/json",
            "Accept: application/json",
            f"Content-Length: {length}",
        ]
        headers += [f"{k}: {v}" for k, v in {**spec.get("headers", {}), **variant}.items()]
        heads.append(("\r\n".join(headers) + "\r\n\r\n").encode())
    return heads, pieces


async def connection(
    index: int,
    port: int,
    concurrency: int,
    heads: list[bytes],
    pieces: list[bytes],
    start_measuring: float,
    stop: float,
    latencies: list[float],
    counts: list[int],
    check_graphql: bool,
    expect: list[bytes],
    remaining: list[int] | None = None,
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    counter = 0
    first = True
    try:
        while True:
            t0 = time.perf_counter()
            if t0 >= stop:
                break
            if remaining is not None:
                if remaining[0] <= 0:
                    break
                remaining[0] -= 1
            req_head = heads[(counter * concurrency + index) % len(heads)]
            counter += 1
            if len(pieces) == 1:
                writer.write(req_head + pieces[0])
            else:
                writer.write(req_head + (b"%02d%014d" % (index, counter)).join(pieces))
            head = await reader.readuntil(b"\r\n\r\n")
            status = head[9:12]
            cl = head.find(b"content-length:")
            if cl < 0:
                cl = head.lower().find(b"content-length:")
            if cl < 0:
                raise CheckFailed(f"no content-length in response head: {head[:300]!r}")
            end = head.index(b"\r\n", cl)
            body = await reader.readexactly(int(head[cl + 15 : end]))
            t1 = time.perf_counter()
            if status != b"200":
                raise CheckFailed(f"status {status.decode()}: {body[:500]!r}")
            if check_graphql and b'"errors"' in body:
                raise CheckFailed(f"GraphQL errors: {body[:500]!r}")
            for fragment in expect:
                if fragment not in body:
                    raise CheckFailed(f"expected {fragment!r} in {body[:500]!r}")
            if first:
                json.loads(body)
                first = False
            if t0 >= start_measuring:
                counts[0] += 1
                latencies.append(t1 - t0)
    finally:
        writer.close()


async def run(args: argparse.Namespace) -> dict:
    with open(args.request_file, encoding="utf-8") as f:
        spec = json.load(f)
    heads, pieces = build_request(spec, args.port)
    now = time.perf_counter()
    start_measuring = now + args.warmup
    stop = start_measuring + args.duration
    latencies: list[float] = []
    counts = [0]
    remaining = [args.requests] if args.requests else None
    cpu: list[float] = []  # the server's CPU seconds when measuring starts and when it ends
    if args.server_pid:
        asyncio.get_running_loop().call_at(
            asyncio.get_running_loop().time() + args.warmup, lambda: cpu.append(process_cpu(args.server_pid))
        )
    await asyncio.gather(
        *(
            connection(
                i, args.port, args.concurrency, heads, pieces, start_measuring, stop, latencies, counts,
                args.check_graphql, [e.encode() for e in args.expect or ()], remaining,
            )
            for i in range(args.concurrency)
        )
    )
    elapsed = time.perf_counter() - start_measuring
    if args.server_pid:
        cpu.append(process_cpu(args.server_pid))
    latencies.sort()

    def pct(p: float) -> float:
        return round(latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1000, 3) if latencies else 0.0

    result = {
        "requests": counts[0],
        "seconds": round(elapsed, 3),
        "rps": round(counts[0] / elapsed, 1),
        "p50_ms": pct(0.50),
        "p99_ms": pct(0.99),
    }
    if len(cpu) == 2 and counts[0]:
        # CPU the server process spent per answered request while measuring: unlike req/s, it does not
        # depend on what else runs on the machine.
        result["server_cpu_ms"] = round((cpu[1] - cpu[0]) / counts[0] * 1000, 3)
    return result


def process_cpu(pid: int) -> float:
    """User + system CPU seconds of a process (Linux /proc)."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--request-file", required=True, help="JSON: {method, path, headers, body}")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--check-graphql", action="store_true")
    parser.add_argument("--expect", action="append", help="bytes every body must contain (repeatable)")
    parser.add_argument("--server-pid", type=int, default=0,
                        help="report the CPU this process (the server) spent per request while measuring (Linux)")
    parser.add_argument("--requests", type=int, default=0,
                        help="stop after this many requests in all (0: run for warmup + duration)")
    args = parser.parse_args(argv)
    if not 1 <= args.concurrency <= 99 or args.duration <= 0 or args.duration > 3600 or args.warmup < 0:
        parser.error("concurrency 1-99, duration 0-3600 s")
    if args.requests < 0:
        parser.error("--requests must be >= 0")
    try:
        result = asyncio.run(run(args))
    except (CheckFailed, asyncio.IncompleteReadError, ConnectionError) as exc:
        print(json.dumps({"error": f"{type(exc).__name__}: {exc}"}))
        return 1
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
