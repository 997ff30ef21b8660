"""A TCP relay in front of the emulator that notes who used each client connection.

Every request of the fork tests carries an ``x-who`` header (``parent``,
``child``, ...). The relay forwards bytes both ways untouched and records,
per client connection, the ``x-who`` values it carried: a child that sent on
a connection of its parent's shows up as a connection with two names.
"""

from __future__ import annotations

import re
import socket
import threading
from dataclasses import dataclass, field

_WHO = re.compile(rb"\r\nx-who: *([\w-]+)\r\n", re.IGNORECASE)


@dataclass
class Link:
    """One client connection through the relay."""

    who: set[str] = field(default_factory=set)


class Relay:
    """Listens on 127.0.0.1 and relays every connection to ``port`` there."""

    def __init__(self, port: int) -> None:
        self.target = port
        self.links: list[Link] = []
        self._lock = threading.Lock()
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(64)
        self._open: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True, name="relay").start()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._sock.getsockname()[1]}/v1"

    def _accept(self) -> None:
        while True:
            try:
                down, _ = self._sock.accept()
            except OSError:
                return
            up = socket.create_connection(("127.0.0.1", self.target))
            link = Link()
            with self._lock:
                self.links.append(link)
                self._open += [down, up]
            threading.Thread(target=self._upstream, args=(down, up, link), daemon=True).start()
            threading.Thread(target=self._downstream, args=(up, down), daemon=True).start()

    def _upstream(self, down: socket.socket, up: socket.socket, link: Link) -> None:
        tail = b""
        try:
            while True:
                data = down.recv(65536)
                if not data:
                    break
                seen = tail + data
                for match in _WHO.finditer(seen):
                    link.who.add(match.group(1).decode())
                tail = seen[-256:]
                up.sendall(data)
        except OSError:
            pass
        finally:
            _close(up)

    def _downstream(self, up: socket.socket, down: socket.socket) -> None:
        try:
            while True:
                data = up.recv(65536)
                if not data:
                    break
                down.sendall(data)
        except OSError:
            pass
        finally:
            _close(down)

    def close(self) -> None:
        _close(self._sock)
        with self._lock:
            for sock in self._open:
                _close(sock)


def _close(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    sock.close()
