"""A tiny backend for valet's hello example (Python standard library only).

valet starts it on the first /api request with PORT set to a free loopback port, and strips
"/api" before the request arrives here, so /api/hello in the browser is /hello below.
"""

import json
import os
import sys
import time
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

STARTED = time.time()
ENDPOINTS = {
    "/": "this list",
    "/health": "readiness probe used by valet",
    "/hello": "a greeting with this process's pid and the time",
}


class Handler(BaseHTTPRequestHandler):
    # HTTP/1.1 lets valet reuse its connection to us; every reply sets Content-Length for it.
    protocol_version = "HTTP/1.1"
    # Head and body are two writes; Nagle would hold the body back for a delayed ACK.
    disable_nagle_algorithm = True

    def do_GET(self):
        path = self.path.split("?", 1)[0]
        if path == "/health":
            self.send(200, b"ok", "text/plain")
        elif path == "/hello":
            self.send_json(
                {
                    "message": "Hello from a valet instance!",
                    "pid": os.getpid(),
                    "time": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                    "uptime_seconds": round(time.time() - STARTED, 1),
                    # Set by valet: which instance this is and what was stripped from the path.
                    "instance": os.environ.get("VALET_INSTANCE_KEY"),
                    "prefix": self.headers.get("X-Forwarded-Prefix"),
                }
            )
        elif path == "/":
            self.send_json({"endpoints": ENDPOINTS})
        else:
            self.send_json({"error": "not_found", "path": path}, status=404)

    def send_json(self, value, status=200):
        self.send(status, json.dumps(value, indent=2).encode(), "application/json")

    def send(self, status, body, content_type):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format, *args):
        # One short line per request, without the default's client address and date: the
        # client is always valet, and valet's instance log stamps lines itself.
        sys.stderr.write((format % args) + "\n")


def main():
    # Loopback only: valet is the one public door.
    port = int(os.environ.get("PORT", "8080"))
    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    print(f"hello app listening on 127.0.0.1:{port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
