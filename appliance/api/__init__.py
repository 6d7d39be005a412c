"""The REST API: litestar app factory, controllers and error mapping."""

from .app import create_app

__all__ = ["create_app"]
