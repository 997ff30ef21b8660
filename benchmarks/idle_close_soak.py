"""Issue 13's "done when", in real time: a server that closes idle connections after 1 s.

100 batch creates spaced 0.5-1.5 s apart (about 100 s); each must reach the server
exactly once, on the first try. Not a test (it waits for real; the suite has the
event-driven version in tests/test_transport_field.py): run it by hand.

    python -m benchmarks.idle_close_soak [--backend trio] [-n 100] [--idle 1.0]
"""

from __future__ import annotations

import argparse
import json
import random
import socket
import threading
import time

import anyio

from holysheep_async import AsyncClient


class IdleClosingServer:
    """``POST /v1/batches`` on keep-alive connections closed after ``idle`` seconds unused."""

    def __init__(self, idle: float) -> None:
        self.idle = idle
        self.creates: list[str] = []
        self.other: list[str] = []
        self.accepted = 0
        self.idle_closes = 0
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}/v1"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            sock, _ = self.listener.accept()
            self.accepted += 1
            threading.Thread(target=self._serve, args=(sock,), daemon=True).start()

    def _serve(self, sock: socket.socket) -> None:
        file = sock.makefile("rb")
        try:
            while True:
                sock.settimeout(self.idle)
                try:
                    line = file.readline()
                except TimeoutError:
                    self.idle_closes += 1
                    return  # the keep-alive timeout: close, no "Connection: close"
                if not line:
                    return
                sock.settimeout(None)
                headers = {}
                while (h := file.readline()) not in (b"\r\n", b""):
                    name, _, value = h.decode().partition(":")
                    headers[name.strip().lower()] = value.strip()
                body = json.loads(file.read(int(headers.get("content-length", 0))) or b"{}")
                method, path, _ = line.decode().split(" ")
                if (method, path) == ("POST", "/v1/batches"):
                    self.creates.append(body["input_file_id"])
                    answer = {
                        "id": f"batch_{len(self.creates)}",
                        "object": "batch",
                        "status": "validating",
                        "input_file_id": body["input_file_id"],
                        "created_at": int(time.time()),
                    }
                else:
                    self.other.append(f"{method} {path}")
                    answer = {"object": "list", "data": [], "has_more": False}
                payload = json.dumps(answer).encode()
                sock.sendall(
                    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                    b"content-length: %d\r\n\r\n%b" % (len(payload), payload)
                )
        except OSError:
            pass
        finally:
            file.close()
            sock.close()


async def soak(n: int, idle: float) -> int:
    srv = IdleClosingServer(idle)
    rng = random.Random()
    failures = 0
    async with AsyncClient(api_key="soak-key", base_url=srv.url) as client:
        for i in range(n):
            await anyio.sleep(rng.uniform(0.5 * idle, 1.5 * idle))
            try:
                await client.batches.create(f"file-{i}")
            except Exception as exc:
                failures += 1
                print(f"create {i} failed: {exc!r}")
            print(f"\r{i + 1}/{n} creates, {srv.idle_closes} idle closes", end="", flush=True)
    print()
    once = srv.creates == [f"file-{i}" for i in range(n)]
    print(f"creates reaching the server: {len(srv.creates)} (each exactly once, in order: {once})")
    print(f"other requests (lookups after a failed create): {len(srv.other)}")
    print(f"connections: {srv.accepted}, closed idle by the server: {srv.idle_closes}")
    ok = once and not srv.other and not failures
    print("OK" if ok else "FAILED")
    return 0 if ok else 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default="asyncio", choices=["asyncio", "trio"])
    parser.add_argument("-n", type=int, default=100)
    parser.add_argument("--idle", type=float, default=1.0, help="server keep-alive timeout (s)")
    args = parser.parse_args()
    raise SystemExit(anyio.run(soak, args.n, args.idle, backend=args.backend))


if __name__ == "__main__":
    main()
