"""``GET /repo/metadata/timestamp.json`` with a strong validator and ``304``.

Every box fetches ``timestamp.json`` every cycle; everything else under ``/repo`` is
versioned and fetched once. litestar's static-file router sends an ``ETag`` but answers
every ``If-None-Match`` with the whole file, so this route takes the one polled file:
its ``ETag`` is the open file's ``mtime_ns-size`` (read from the same descriptor as the
bytes, so the two always belong together), a matching ``If-None-Match`` is answered
``304`` with no body — an idle box's poll served by the hub itself costs what it costs
on nginx — and ``Cache-Control: no-cache`` tells a CDN in front to revalidate.
"""

from __future__ import annotations

import os
from typing import Any

from litestar import Request, Response, get

from .services import Hub

__all__ = ["etag_matches", "timestamp_json"]

_HEADERS = {"Cache-Control": "no-cache"}


def etag_matches(header: str | None, etag: str) -> bool:
    """Whether an ``If-None-Match`` header names ``etag`` (weak or strong, or ``*``)."""
    if not header:
        return False
    for candidate in header.split(","):
        candidate = candidate.strip()
        if candidate == "*" or candidate.removeprefix("W/") == etag:
            return True
    return False


@get("/repo/metadata/timestamp.json", include_in_schema=False, sync_to_thread=False)
def timestamp_json(request: Request[Any, Any, Any]) -> Response[bytes]:
    """The repository's timestamp.json, or 304 when the box already holds it."""
    hub: Hub = request.app.state.hub
    path = hub.settings.repo_dir / "metadata" / "timestamp.json"
    try:
        with path.open("rb") as f:
            st = os.fstat(f.fileno())
            etag = f'"{st.st_mtime_ns:x}-{st.st_size:x}"'
            if etag_matches(request.headers.get("if-none-match"), etag):
                return Response(b"", status_code=304, headers={**_HEADERS, "ETag": etag})
            data = f.read(1 << 20)
    except FileNotFoundError:
        return Response(b'{"error": "this hub publishes no timestamp.json yet"}',
                        status_code=404, media_type="application/json")
    return Response(data, media_type="application/json", headers={**_HEADERS, "ETag": etag})
