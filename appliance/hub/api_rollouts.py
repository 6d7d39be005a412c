"""The hub's rollout API (the work is in :mod:`.rollouts`)::

    GET  /v1/hub/rollouts                 hub:read     ?model=M
    POST /v1/hub/rollouts                 hub:operate  a rollout (:mod:`.rollout_spec`)  201
    GET  /v1/hub/rollouts/{id}            hub:read     waves, counts, failures, why halted
    POST /v1/hub/rollouts/{id}/{action}   hub:operate  approve | pause | resume | stop |
                                                       rollback

400 for a request out of range, 404 for an unknown rollout, group or package, 409 for an
overlapping rollout or a command the rollout's status does not allow, 403 when the
creator approves their own rollout.
"""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, get, post
from litestar.params import FromPath, FromQuery, JSONBody

from ..access.scopes import HUB_OPERATE, HUB_READ
from ..errors import NotFound
from . import rollouts
from .api import HubScope, actor_of, hub_of
from .rollout_spec import RolloutSpec

ACTIONS = {"approve": rollouts.approve, "pause": rollouts.pause, "resume": rollouts.resume,
           "stop": rollouts.stop, "rollback": rollouts.rollback}


class RolloutController(Controller):
    """Staged rollouts; every command is in the hub's audit chain."""

    path = "/v1/hub/rollouts"

    @get("/", guards=[HubScope(HUB_READ)], sync_to_thread=True)
    def list(self, request: Request[Any, Any, Any],
             model: FromQuery[str | None] = None) -> list[dict[str, Any]]:
        return rollouts.list_rollouts(hub_of(request), model)

    @post("/", guards=[HubScope(HUB_OPERATE)], status_code=201, sync_to_thread=True)
    def create(self, request: Request[Any, Any, Any],
               data: JSONBody[RolloutSpec]) -> dict[str, Any]:
        return rollouts.create(hub_of(request), data, actor=actor_of(request))

    @get("/{rollout_id:str}", guards=[HubScope(HUB_READ)], sync_to_thread=True)
    def status(self, request: Request[Any, Any, Any], rollout_id: FromPath[str]) -> dict[str, Any]:
        return rollouts.status(hub_of(request), rollout_id)

    @post("/{rollout_id:str}/{action:str}", guards=[HubScope(HUB_OPERATE)], status_code=200,
          sync_to_thread=True)
    def act(self, request: Request[Any, Any, Any], rollout_id: FromPath[str],
            action: FromPath[str]) -> dict[str, Any]:
        command = ACTIONS.get(action)
        if command is None:
            raise NotFound(f"no rollout command {action[:64]!r}: use one of "
                           f"{', '.join(ACTIONS)}")
        return command(hub_of(request), rollout_id, actor=actor_of(request))
