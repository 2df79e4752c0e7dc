"""A TCP relay on 127.0.0.1 in front of a real engine's TCP port, to cut a watcher off from a host
and let it back while the shared engines themselves keep running."""

from __future__ import annotations

import random
import socket
import threading

LOOPBACK = "127.0.0.1"
# Below the kernel's ephemeral range (32768-60999 here): while the relay is down, an outgoing
# connection of another process could otherwise take its port and `up()` could not bind again.
PORTS = range(26000, 32000)  # and clear of the testbed's fixed ports (23750-23861, 5000-5001)


def _quiet_port() -> int:
    for _ in range(200):
        port = random.choice(PORTS)
        with socket.socket() as sock:
            try:
                sock.bind((LOOPBACK, port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port below the ephemeral range")


class TcpRelay:
    """127.0.0.1:port -> target (host, port). `up()` opens the port; `down()` closes it and cuts
    every open connection (to the client: the engine went away); `up()` again opens it again."""

    def __init__(self, target: tuple[str, int]):
        self.target = target
        self.port = _quiet_port()
        self.accepted = 0
        self._listener: socket.socket | None = None
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()

    def up(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((LOOPBACK, self.port))
        listener.listen(64)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def down(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            # close() alone leaves a thread blocked in accept() holding the socket open and still
            # listening (one more connection gets through and the port stays taken); shutdown()
            # wakes that accept() first.
            try:
                listener.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            listener.close()
        with self._lock:
            sockets, self._sockets = self._sockets, []
        for sock in sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            if self._listener is not listener:  # accepted as down() ran
                client.close()
                return
            try:
                upstream = socket.create_connection(self.target, timeout=5)
                upstream.settimeout(None)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._sockets += [client, upstream]
                self.accepted += 1
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            # Either side ending ends both (the sockets are closed by down()).
            for sock in (source, sink):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
