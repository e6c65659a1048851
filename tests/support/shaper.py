"""A link shaper: a TCP proxy on 127.0.0.1 that gives loopback the internet's shape.

Loopback delivers gigabytes per second with no delay, so one connection outruns the disk and a
download never needs more. Over the internet a CDN caps each connection (tens of MB/s) and
every round trip costs tens of milliseconds; that is where several ranged connections pay and
where a client's timing decisions matter. ::

    with LinkShaper(upstream_url, rate=25 * MiB, rtt=0.040) as link:
        download_file(f"{link.url}/model.bin", part)   # 25 MiB/s per connection, 40 ms RTT

Per connection:

- ``rate`` (bytes/s) caps what flows from the upstream to the client (the download
  direction), paced evenly, so a connection never gets more than ``rate`` whatever its
  neighbours do: a CDN's per-connection cap. ``None``: no cap.
- ``rtt`` (seconds) is the round trip: each byte, in either direction, arrives ``rtt / 2``
  after it was sent, and a new connection reaches the upstream one ``rtt`` after it was
  accepted (the TCP handshake). Bytes queue behind the delay, so latency never costs
  throughput.
- a reset from the upstream (a TCP RST, as the fault proxy's ``reset`` fault sends) is passed on
  as a reset once the bytes that arrived before it have been delivered; an orderly close as an
  orderly close.

It speaks bytes, not HTTP: it composes with anything behind it (the fault proxy, the mirror,
nginx) and the client's ``Host`` header goes through untouched. ``python -m
tests.support.shaper UPSTREAM --rate-mib 25 --rtt-ms 40`` runs one in the foreground.
"""

from __future__ import annotations

import argparse
import contextlib
import queue
import socket
import struct
import threading
import time
from typing import Self
from urllib.parse import urlsplit

__all__ = ["LinkShaper"]

MiB = 1 << 20
_PIECE = 128 * 1024  # bytes per read and per paced write
_QUEUED = 64  # pieces in flight inside the shaper per direction (8 MiB): back-pressure beyond
_EOF, _RESET = b"", None


class _Pipe:
    """One direction of one connection: read from ``src``, deliver to ``dst`` after ``delay``,
    at most ``rate`` bytes/s."""

    def __init__(
        self, src: socket.socket, dst: socket.socket, delay: float, rate: float | None
    ) -> None:
        self.src, self.dst, self.delay, self.rate = src, dst, delay, rate
        self.q: queue.Queue[tuple[float, bytes | None]] = queue.Queue(_QUEUED)
        self.bytes = 0

    def read(self) -> None:
        while True:
            try:
                data = self.src.recv(_PIECE)
            except OSError:
                self.q.put((time.monotonic() + self.delay, _RESET))
                return
            self.q.put((time.monotonic() + self.delay, data))
            if not data:
                return

    def write(self, done: threading.Event) -> None:
        clock = 0.0  # when the pacer lets the next byte go
        try:
            while True:
                due, data = self.q.get()
                start = max(due, clock)
                wait = start - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
                if data is _RESET:
                    _reset(self.dst)
                    return
                if not data:
                    with contextlib.suppress(OSError):
                        self.dst.shutdown(socket.SHUT_WR)
                    return
                self.dst.sendall(data)
                self.bytes += len(data)
                if self.rate:
                    clock = max(start, time.monotonic() - 0.05) + len(data) / self.rate
        except OSError:
            _reset(self.src)  # the receiving side went away: tell the sending side
        finally:
            done.set()


def _reset(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()


class LinkShaper:
    """The shaper on a random free port of 127.0.0.1. Context manager; ``url`` once built.

    ``rate``: bytes/s per connection towards the client (None: uncapped); ``rtt``: seconds.
    ``connections`` counts accepted connections; ``delivered`` the bytes sent to clients.
    """

    def __init__(self, upstream: str, rate: float | None = None, rtt: float = 0.0) -> None:
        parts = urlsplit(upstream if "://" in upstream else f"http://{upstream}")
        self.upstream = (parts.hostname or "127.0.0.1", parts.port or 80)
        self.rate, self.rtt = rate, rtt
        self._listener = socket.create_server(("127.0.0.1", 0), backlog=128)
        self.port = self._listener.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.connections = 0
        self._pipes: list[_Pipe] = []
        self._socks: list[socket.socket] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def delivered(self) -> int:
        """Bytes delivered to clients so far (all connections)."""
        with self._lock:
            return sum(p.bytes for p in self._pipes[1::2])

    def start(self) -> Self:
        """Accept connections in a background thread."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._accept, name="shaper", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop accepting and cut every connection."""
        self._stopping.set()
        with contextlib.suppress(OSError):
            # close() alone does not wake a thread blocked in accept(); shutdown() does.
            self._listener.shutdown(socket.SHUT_RDWR)
        with contextlib.suppress(OSError):
            self._listener.close()
        with self._lock:
            socks = list(self._socks)
        for sock in socks:
            with contextlib.suppress(OSError):
                sock.close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _accept(self) -> None:
        while not self._stopping.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                self.connections += 1
                self._socks.append(client)
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        if self._stopping.wait(self.rtt):  # the handshake's round trip
            client.close()
            return
        try:
            upstream = socket.create_connection(self.upstream, timeout=30)
        except OSError:
            _reset(client)
            return
        upstream.settimeout(None)
        for sock in (client, upstream):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        up = _Pipe(client, upstream, self.rtt / 2, None)
        down = _Pipe(upstream, client, self.rtt / 2, self.rate)
        with self._lock:
            self._socks.append(upstream)
            self._pipes += [up, down]
        done = [threading.Event(), threading.Event()]
        threads = [
            threading.Thread(target=up.read, daemon=True),
            threading.Thread(target=up.write, args=(done[0],), daemon=True),
            threading.Thread(target=down.read, daemon=True),
            threading.Thread(target=down.write, args=(done[1],), daemon=True),
        ]
        for t in threads:
            t.start()
        # The download direction decides when the connection is over (a client half-closing
        # its side while a response flows is legal HTTP).
        done[1].wait()
        for sock in (client, upstream):
            with contextlib.suppress(OSError):
                sock.close()
        with self._lock:
            for sock in (client, upstream):
                with contextlib.suppress(ValueError):
                    self._socks.remove(sock)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="a per-connection bandwidth + RTT shaper")
    parser.add_argument("upstream", help="host:port or http://host:port to forward to")
    parser.add_argument("--rate-mib", type=float, default=25.0, help="MiB/s per connection")
    parser.add_argument("--rtt-ms", type=float, default=40.0, help="round trip, milliseconds")
    args = parser.parse_args(argv)
    rate = args.rate_mib * MiB if args.rate_mib > 0 else None
    with LinkShaper(args.upstream, rate=rate, rtt=args.rtt_ms / 1000) as link:
        print(link.url, flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            threading.Event().wait()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
