"""Triton's model repository extension: index, load, unload."""

from __future__ import annotations

from typing import Any

import anyio.to_thread
from litestar import Controller, post
from litestar.params import FromPath

from ..access.scopes import ADMIN, READ
from ..runtime.repository import ModelRepository
from .auth import requires
from .registry_access import AnyRequest
from .state import services_of


def _repo(request: AnyRequest) -> ModelRepository:
    return services_of(request).repository


class RepositoryController(Controller):
    path = "/v2/repository"
    tags = ["repository"]

    @post("/index", summary="Every version this server knows, with its state", status_code=200,
          guards=[requires(READ)])
    async def index(self, request: AnyRequest) -> list[dict[str, Any]]:
        body = await request.body()
        only_ready = b'"ready":true' in body.replace(b" ", b"")
        return [{"name": s.record.model, "version": s.record.version, "state": s.state.upper(),
                 "reason": s.reason} for s in _repo(request).index()
                if s.ready or not only_ready]

    @post("/models/{name:str}/load", summary="Load a model's serving versions",
          status_code=200, guards=[requires(ADMIN)])
    async def load(self, request: AnyRequest, name: FromPath[str]) -> dict[str, Any]:
        loaded = await anyio.to_thread.run_sync(_repo(request).load_model, name)
        failed = [f"version {s.record.version}: {s.reason}" for s in loaded if not s.ready]
        if failed:
            from ..errors import BadRequest
            raise BadRequest(f"failed to load {name}: {'; '.join(failed)}")
        return {}

    @post("/models/{name:str}/unload", summary="Unload every version of a model",
          status_code=200, guards=[requires(ADMIN)])
    async def unload(self, request: AnyRequest, name: FromPath[str]) -> dict[str, Any]:
        await anyio.to_thread.run_sync(_repo(request).unload_model, name)
        return {}
