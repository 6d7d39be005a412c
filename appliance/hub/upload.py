"""``appliance hub publish PKG --url URL``: upload a package to a running hub, as a CI
job does, with a Bearer token holding ``hub:publish`` (standard library only)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from ..errors import ApplianceError, BadRequest, ServiceUnavailable

#: how long one upload may take, seconds (a large package over a slow link)
UPLOAD_TIMEOUT_S = 3600.0


class HubAnswered(ApplianceError):
    """The hub refused the upload; ``status`` is its HTTP status."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


def upload_package(url: str, package: Path, token: str | None, *,
                   timeout_s: float = UPLOAD_TIMEOUT_S) -> dict[str, Any]:
    """POST ``package`` to ``<url>/v1/publish``; the hub's package record."""
    if not token:
        raise BadRequest("--url needs a token with hub:publish: pass --token or set "
                         "APPLIANCE_HUB_TOKEN (`appliance hub token issue --scope "
                         "hub:publish` on the hub mints one)")
    if not package.is_file():
        raise BadRequest(f"{package} is not a file: give the .tar `appliance package build` "
                         "wrote")
    endpoint = url.rstrip("/") + "/v1/publish"
    with package.open("rb") as body:
        request = urllib.request.Request(endpoint, data=body, method="POST", headers={
            "Authorization": f"Bearer {token}", "Content-Type": "application/x-tar",
            "Content-Length": str(package.stat().st_size)})
        # no proxies from the environment: the package goes to the hub named, nowhere else
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        try:
            with opener.open(request, timeout=timeout_s) as response:
                return dict(json.loads(response.read()))
        except urllib.error.HTTPError as exc:
            try:
                said = json.loads(exc.read()).get("error")
            except ValueError:
                said = None
            raise HubAnswered(f"the hub at {url} refused the package ({exc.code}): "
                              f"{said or exc.reason}", exc.code) from None
        except (urllib.error.URLError, OSError) as exc:
            raise ServiceUnavailable(f"the hub at {url} is unreachable: {exc}") from None
