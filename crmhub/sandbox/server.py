"""Serve the sandbox apps over real HTTP on loopback ports, for manual use and other tools.

Each system listens on its own port (``Sandbox(ports=DEFAULT_PORTS)``); a request is handed to
the app exactly as the in-process transport would hand it, so connectors, ``curl`` and a
browser see the same API the tests do::

    servers = serve(Sandbox(500, ports=DEFAULT_PORTS))
    ...
    for server in servers:
        server.shutdown()
"""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx

from crmhub.sandbox.app import SandboxApp
from crmhub.sandbox.world import LOOPBACK, Sandbox

__all__ = ["SandboxServer", "serve"]

_HOP_BY_HOP = frozenset({"connection", "keep-alive", "transfer-encoding", "content-length"})


class SandboxServer(ThreadingHTTPServer):
    """One app on one loopback port."""

    daemon_threads = True

    def __init__(self, app: SandboxApp, port: int) -> None:
        super().__init__((LOOPBACK, port), _Handler)
        self.app = app

    @property
    def url(self) -> str:
        """The server's base URL."""
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}"


class _Handler(BaseHTTPRequestHandler):
    server: SandboxServer
    protocol_version = "HTTP/1.1"

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        request = httpx.Request(
            self.command,
            f"{self.server.url}{self.path}",
            headers=[(k, v) for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP],
            content=body,
        )
        try:
            response = self.server.app(request)
            content = response.read()
        except Exception:  # a bug in an app must answer 500, not drop the connection
            response, content = httpx.Response(500), b'{"error": "sandbox app failed"}'
        self.send_response(response.status_code)
        for name, value in response.headers.items():
            if name.lower() not in _HOP_BY_HOP:
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(content)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(content)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _answer

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: request lines would show ids and, in query strings, personal data."""


def serve(sandbox: Sandbox) -> list[SandboxServer]:
    """Start one server per app of ``sandbox`` (which must have ``ports``) in daemon threads.

    Raises:
        ValueError: if the sandbox has no ports.
        OSError: if a port is taken.
    """
    if not sandbox.ports:
        raise ValueError("the sandbox has no ports: create it with ports=DEFAULT_PORTS")
    servers: list[SandboxServer] = []
    try:
        for system, port in sandbox.ports.items():
            servers.append(SandboxServer(sandbox.app(system), port))
    except OSError:
        for server in servers:
            server.server_close()
        raise
    for server in servers:
        threading.Thread(target=server.serve_forever, daemon=True).start()
    return servers
