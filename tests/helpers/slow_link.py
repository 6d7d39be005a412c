"""A slow network link on 127.0.0.1: a TCP relay that holds every chunk the upstream
server answers for ``delay_s`` before passing it on.

Between a box and its hub it widens the moment in which the hub has stored a report but
the box has not yet read the acknowledgement — the moment a SIGKILL must not turn into a
lost or a doubled report. Nothing is changed on the way; an upstream that is down closes
the client's connection (the box sees a refused hub).

    link = SlowLink(upstream_port=hub_port, delay_s=0.2)
    link.url                     # what the box is told the hub is
    link.close()
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time


class SlowLink:
    def __init__(self, upstream_port: int, delay_s: float) -> None:
        self.upstream_port = upstream_port
        self.delay_s = delay_s
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._listener.getsockname()[1])
        self.url = f"http://127.0.0.1:{self.port}"
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self) -> None:
        self._closed = True
        self._listener.close()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._relay, args=(client,), daemon=True).start()

    def _relay(self, client: socket.socket) -> None:
        try:
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port), timeout=5)
        except OSError:
            client.close()
            return
        upstream.settimeout(None)
        threading.Thread(target=_pump, args=(client, upstream, 0.0), daemon=True).start()
        _pump(upstream, client, self.delay_s)


def _pump(src: socket.socket, dst: socket.socket, delay_s: float) -> None:
    try:
        while chunk := src.recv(65536):
            if delay_s:
                time.sleep(delay_s)
            dst.sendall(chunk)
    except OSError:
        pass
    finally:
        for s in (src, dst):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()
