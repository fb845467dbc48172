"""The floor under every API call: one HTTP round trip to a FastAPI route that does nothing.

The cycle benchmark compares steps that are one or two calls on our side (find the
pending request, approve it, fetch a result with a fresh handle) with PySyft calls of
15 to 40 ms. This measures what no route of ours can go below on this machine:

- a bare FastAPI app under uvicorn (the server stack the datasite runs), one ``async``
  route returning a constant, called with httpx (the clients' HTTP library) and, for
  comparison, with the standard library's ``http.client``;
- the datasite's own unauthenticated ``/health`` and authenticated ``/auth/me``.

Each is called hot (back to back) and after 0.5 s of idleness, which is how the cycle
calls them (a step follows a run or a check): caches have gone cold by then, and the
cold figure is the one the cycle sees. Writes ``bench/results/http_floor.json``.

    .venv/bin/python bench/bench_http_floor.py [--hot 300] [--cold 20]
"""

from __future__ import annotations

import argparse
import http.client
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx
from fastapi import FastAPI

from datasite import admin
from datasite.client.embedded import EmbeddedSite, free_port

RESULTS = Path(__file__).parent / "results" / "http_floor.json"
OWNER, OWNER_PW = "owner@bench.example", "bench-owner-password"

bare = FastAPI()


@bare.get("/noop")
async def noop() -> dict[str, str]:
    return {"status": "ok"}


def serve_bare(port: int) -> subprocess.Popen[bytes]:
    """The bare app in its own uvicorn process, as the datasite is served."""
    process = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"import uvicorn; uvicorn.run('bench_http_floor:bare', "
            f"port={port}, log_level='warning')",
        ],
        cwd=Path(__file__).parent,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            httpx.get(f"http://127.0.0.1:{port}/noop", timeout=1)
            return process
        except httpx.TransportError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError("the bare app did not start")


def timings(call: Callable[[], object], hot: int, cold: int) -> dict[str, float]:
    """p50/p95 in milliseconds, back to back and after 0.5 s idle."""
    call()
    back_to_back = []
    for _ in range(hot):
        t = time.perf_counter()
        call()
        back_to_back.append(time.perf_counter() - t)
    after_idle = []
    for _ in range(cold):
        time.sleep(0.5)
        t = time.perf_counter()
        call()
        after_idle.append(time.perf_counter() - t)

    def q(values: list[float], p: int) -> float:
        return round(statistics.quantiles(values, n=100)[p - 1] * 1e3, 3)

    return {
        "hot_p50_ms": round(statistics.median(back_to_back) * 1e3, 3),
        "hot_p95_ms": q(back_to_back, 95),
        "cold_p50_ms": round(statistics.median(after_idle) * 1e3, 3),
        "cold_p95_ms": q(after_idle, 95),
    }


def stdlib_get(host: str, port: int, path: str) -> Callable[[], bytes]:
    connection = http.client.HTTPConnection(host, port)

    def call() -> bytes:
        connection.request("GET", path)
        return connection.getresponse().read()

    return call


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hot", type=int, default=300)
    parser.add_argument("--cold", type=int, default=20)
    args = parser.parse_args()
    results: dict[str, dict[str, float]] = {}
    port = free_port()
    process = serve_bare(port)
    try:
        client = httpx.Client(base_url=f"http://127.0.0.1:{port}")
        results["bare FastAPI, httpx"] = timings(
            lambda: client.get("/noop").json(), args.hot, args.cold
        )
        stdlib = stdlib_get("127.0.0.1", port, "/noop")
        results["bare FastAPI, http.client"] = timings(stdlib, args.hot, args.cold)
    finally:
        process.kill()
        process.wait()
    with (
        tempfile.TemporaryDirectory() as folder,
        EmbeddedSite(Path(folder) / "site", owner_email=OWNER, owner_password=OWNER_PW) as site,
    ):
        owner = admin.connect(site.url, OWNER, OWNER_PW)
        results["datasite /health, httpx"] = timings(
            lambda: owner.session.get("/health"), args.hot, args.cold
        )
        results["datasite /auth/me, httpx"] = timings(
            lambda: owner.session.get("/auth/me"), args.hot, args.cold
        )
    floor = results["bare FastAPI, httpx"]["cold_p50_ms"]
    report = {
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "calls": results,
        "cold_over_bare_httpx": {k: round(v["cold_p50_ms"] / floor, 2) for k, v in results.items()},
    }
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    for name, row in results.items():
        print(
            f"{name:<28} hot p50 {row['hot_p50_ms']:6.3f} ms   "
            f"after 0.5 s idle p50 {row['cold_p50_ms']:6.3f} ms "
            f"({report['cold_over_bare_httpx'][name]}x the bare httpx floor)"
        )


if __name__ == "__main__":
    main()
