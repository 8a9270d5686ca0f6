"""OTEL_TRACES_EXPORTER=otlp end to end: a real server exports its spans over OTLP/HTTP to a receiver on
loopback, configured only by the standard OTEL_* variables, and flushes them at shutdown."""

import json
import threading
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from live_server import LiveServer


class Receiver(BaseHTTPRequestHandler):
    requests: list[tuple[str, bytes]] = []

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        Receiver.requests.append((self.path, body))
        self.send_response(200)
        self.send_header("content-type", "application/x-protobuf")
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


def test_spans_are_exported_over_otlp(db_url, tmp_path):
    Receiver.requests = []
    collector = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=collector.serve_forever, daemon=True).start()
    env = {
        "OTEL_TRACES_EXPORTER": "otlp",
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{collector.server_port}",
        "OTEL_SERVICE_NAME": "jingtan-otlp-test",
        "JINGTAN_OPERATIONS__SHUTDOWN_DRAIN_SECONDS": "0",
    }
    try:
        with LiveServer(db_url, tmp_path, env=env) as server:
            request = urllib.request.Request(
                server.url, data=json.dumps({"query": "query Probe { merchants(first: 1) { totalCount } }"}).encode(),
                headers={"Content-Type": "application/json", "X-Request-ID": "otlp-request-0001"},
            )
            with urllib.request.urlopen(request, timeout=20) as r:
                assert r.status == 200
        # stopped (SIGTERM): the batch processor flushed on shutdown
    finally:
        collector.shutdown()
    assert Receiver.requests, "no OTLP export arrived"
    spans = []
    for path, body in Receiver.requests:
        assert path == "/v1/traces"
        export = ExportTraceServiceRequest()
        export.ParseFromString(body)
        for resource_spans in export.resource_spans:
            service = {a.key: a.value.string_value for a in resource_spans.resource.attributes}["service.name"]
            assert service == "jingtan-otlp-test"
            for scope in resource_spans.scope_spans:
                spans.extend(scope.spans)
    ours = [s for s in spans if any(a.key == "jingtan.request_id" and a.value.string_value == "otlp-request-0001"
                                    for a in s.attributes)]
    names = {s.name for s in ours}
    assert {"POST /graphql", "query Probe", "resolve Query.merchants"} <= names, names
    assert any(name.startswith("SQL SELECT") for name in names), names
