"""The sandbox systems served on loopback ports: a hub syncs from them over real HTTP."""

from __future__ import annotations

import socket
from pathlib import Path

import httpx

from crmhub.sandbox.server import serve
from crmhub.sandbox.world import SYSTEM_APPS, Sandbox


def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def test_served_systems_answer_over_http_and_a_hub_syncs_from_them(tmp_path: Path) -> None:
    ports = dict(zip(SYSTEM_APPS, _free_ports(len(SYSTEM_APPS)), strict=True))
    sandbox = Sandbox(40, ports=ports)
    servers = serve(sandbox)
    try:
        refused = httpx.get(f"http://127.0.0.1:{ports['stripe']}/v1/customers")
        assert refused.status_code == 401 and refused.json()["error"]["type"]
        with sandbox.open_hub(tmp_path, transport=None, sleep=lambda _s: None) as hub:
            results = hub.sync(match=False)
        assert [r.status for r in results] == ["succeeded"] * len(results)
        assert {r.connector for r in results if r.counts.inserted} == set(SYSTEM_APPS)
        assert all(sum(app.calls.values()) > 0 for app in sandbox.apps.values())
    finally:
        for server in servers:
            server.shutdown()
            server.server_close()
