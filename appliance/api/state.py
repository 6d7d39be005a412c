"""The typed services behind every route (``create_app`` puts them on ``app.state``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

from litestar.connection import ASGIConnection

if TYPE_CHECKING:
    from ..services import Services

__all__ = ["services_of"]


def services_of(connection: ASGIConnection[Any, Any, Any, Any]) -> Services:
    """The app's :class:`~appliance.services.Services`."""
    return cast("Services", connection.app.state.services)
