"""Bind the listening socket before the server starts, so a busy port is one clear error."""

from __future__ import annotations

import socket

from .errors import ConfigError


def bind_socket(host: str, port: int) -> socket.socket:
    """Bind before starting the server, so a busy port is one clear message."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP explicitly: asyncio sets TCP_NODELAY on accepted connections only then
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        hint = ("another process is listening there (another appliance?): stop it or pass "
                "--port" if exc.errno == 98 else "check --host")
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror}; {hint}") from None
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock
