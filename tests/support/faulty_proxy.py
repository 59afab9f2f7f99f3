"""An HTTP proxy that fails a share of the requests it forwards, the way S3 does on a bad day.

    python -m tests.support.faulty_proxy LISTEN_PORT UPSTREAM_URL FAULT_RATE SEED

Each request is, with probability FAULT_RATE, answered with one of: 503 SlowDown
(throttling), 500 InternalError, or a connection dropped before any response. Everything
else is forwarded to UPSTREAM_URL unchanged. Every injected fault is one line on stderr.
"""

from __future__ import annotations

import http.client
import random
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

ERROR_BODY = (
    '<?xml version="1.0" encoding="UTF-8"?>\n'
    "<Error><Code>{code}</Code><Message>injected fault</Message></Error>"
)
FAULTS = (("503", "SlowDown"), ("500", "InternalError"), ("drop", ""))
# Headers that describe one hop, not the message (RFC 9110 §7.6.1).
HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade"}


def make_handler(upstream: str, rate: float, seed: int) -> type[BaseHTTPRequestHandler]:
    target = urlsplit(upstream)
    chooser = random.Random(seed)
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _handle(self) -> None:
            body = self._read_body()
            with lock:
                fault = chooser.choice(FAULTS) if chooser.random() < rate else None
            if fault is not None:
                print(f"fault {fault[0]} {self.command} {self.path}", file=sys.stderr, flush=True)
                if fault[0] == "drop":
                    self.close_connection = True
                    self.connection.shutdown(2)
                    return
                payload = ERROR_BODY.format(code=fault[1]).encode()
                self.send_response(int(fault[0]))
                self.send_header("Content-Type", "application/xml")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)
                return
            upstream_conn = http.client.HTTPConnection(target.hostname, target.port, timeout=60)
            headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
            if body is not None:
                headers["Content-Length"] = str(len(body))
            upstream_conn.request(self.command, self.path, body=body, headers=headers)
            response = upstream_conn.getresponse()
            data = response.read()
            self.send_response(response.status, response.reason)
            # A HEAD response's Content-Length is the object's size (its body is empty).
            keep_length = self.command == "HEAD"
            for key, value in response.getheaders():
                if key.lower() in HOP_BY_HOP or (
                    key.lower() == "content-length" and not keep_length
                ):
                    continue
                self.send_header(key, value)
            if not keep_length:
                self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)
            upstream_conn.close()

        def _read_body(self) -> bytes | None:
            """The request body, de-framed if the client sent it chunked (botocore streams
            uploads with checksums that way); forwarded with a Content-Length instead."""
            if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
                chunks = []
                while True:
                    size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                    if size == 0:
                        while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                            pass  # trailer fields
                        break
                    chunks.append(self.rfile.read(size))
                    self.rfile.readline()  # the CRLF after each chunk
                return b"".join(chunks)
            length = int(self.headers.get("Content-Length") or 0)
            return self.rfile.read(length) if length else None

        do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _handle

        def log_message(self, format: str, *args: object) -> None:
            pass  # only faults are reported

    return Handler


def main() -> None:
    port, upstream, rate, seed = int(sys.argv[1]), sys.argv[2], float(sys.argv[3]), int(sys.argv[4])
    server = ThreadingHTTPServer(("127.0.0.1", port), make_handler(upstream, rate, seed))
    server.daemon_threads = True
    server.serve_forever()


if __name__ == "__main__":
    main()
