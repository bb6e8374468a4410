"""A stand-in for the self-hosted Convex backend: one process, three HTTP ports.

Convex listens on 3210 (API and WebSocket sync), 3211 (HTTP actions) and 6791 (dashboard).
valet's process driver cannot hand out fixed ports, so it passes the ones it picked as
VALET_PORT_API, VALET_PORT_HTTP and VALET_PORT_DASHBOARD. Each port answers JSON saying which
port it is, which path arrived, and what prefix valet stripped, so routing is easy to see.
"""

import json
import os
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PORT_NAMES = ("api", "http", "dashboard")


def handler_for(port_name):
    """A handler class that knows which named port it serves."""

    class Handler(BaseHTTPRequestHandler):
        # Keep-alive for valet's connection pool; every reply sets Content-Length.
        protocol_version = "HTTP/1.1"
        # Head and body are two writes; Nagle would hold the body back for a delayed ACK.
        disable_nagle_algorithm = True

        def do_GET(self):
            # Drain any body so the next request on this connection starts where it should.
            length = int(self.headers.get("Content-Length") or 0)
            if length:
                self.rfile.read(length)
            body = json.dumps(
                {
                    "port_name": port_name,
                    "path": self.path,
                    "forwarded_prefix": self.headers.get("X-Forwarded-Prefix"),
                    "method": self.command,
                    "pid": os.getpid(),
                }
            ).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_POST = do_PUT = do_DELETE = do_PATCH = do_GET

        def log_message(self, format, *args):
            sys.stderr.write(f"[{port_name}] {format % args}\n")

    return Handler


def main():
    servers = []
    for name in PORT_NAMES:
        var = f"VALET_PORT_{name.upper()}"
        if var not in os.environ:
            sys.exit(f"multiport: {var} is not set (valet sets it for each named port)")
        # Bind every port before serving any, so a TCP readiness check on the default port
        # (api) means all three are up.
        server = ThreadingHTTPServer(("127.0.0.1", int(os.environ[var])), handler_for(name))
        server.daemon_threads = True
        servers.append((name, server))
    for name, server in servers:
        # Daemon threads: the process ends when the main thread does (e.g. on SIGTERM).
        threading.Thread(target=server.serve_forever, name=name, daemon=True).start()
        print(f"multiport: {name} on 127.0.0.1:{server.server_address[1]}", flush=True)
    threading.Event().wait()


if __name__ == "__main__":
    main()
