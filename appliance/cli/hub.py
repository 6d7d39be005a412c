"""`appliance hub ...`: run the fleet hub and operate it.

The commands work on the hub directory (``--dir``, env ``APPLIANCE_HUB_DIR``, default
``./hub``) directly, like ``appliance routes`` on the registry, so they work with or
without ``hub serve`` running; each change is recorded in the hub's audit chain as
``--by`` (default ``$USER``). ``publish --url`` uploads to a running hub instead, with a
token holding ``hub:publish`` (what a CI job does)::

    appliance hub init /srv/hub
    appliance hub groups add lab --dir /srv/hub
    appliance hub enroll-token --group lab --dir /srv/hub
    appliance hub publish scale-2.tar --url https://hub:8700 --token "$HUB_TOKEN"
    appliance hub assign lab scale 2 --stage production --dir /srv/hub
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from . import echo_result, handle_errors, json_option, main, setup_logging

if TYPE_CHECKING:
    from ..hub.services import Hub

dir_option = click.option(
    "--dir", "hub_dir", type=click.Path(path_type=Path), default=None,
    envvar="APPLIANCE_HUB_DIR", help="The hub directory. Env: APPLIANCE_HUB_DIR. Default ./hub")
by_option = click.option("--by", "by", default=None, help="Who (default: $USER).")


def _actor(by: str | None) -> str:
    return by or os.environ.get("USER") or "cli"


@contextlib.contextmanager
def _hub(hub_dir: Path | None, **overrides: Any) -> Iterator[Hub]:
    from ..hub.services import open_hub
    from ..hub.settings import load_hub_settings

    hub = open_hub(load_hub_settings(hub_dir, overrides))
    try:
        yield hub
    finally:
        hub.close()


@main.group()
def hub() -> None:
    """The fleet hub: TUF-signed desired state and packages, enrolment, reports."""


@hub.command("init")
@click.argument("directory", type=click.Path(path_type=Path))
@click.option("--bins", type=int, default=None, help="Hash bins of the desired states.")
@json_option
@handle_errors
def hub_init(directory: Path, bins: int | None, as_json: bool) -> None:
    """Create a hub in DIRECTORY: TUF repository and keys, database, token key."""
    from ..hub.services import init_hub
    from ..hub.settings import load_hub_settings

    result = init_hub(load_hub_settings(directory, {"bins": bins}))
    echo_result(result, as_json, f"hub created in {directory} ({result['bins']} bins); "
                                 f"next: `appliance hub serve --dir {directory}`")


@hub.command("serve")
@dir_option
@click.option("--host", default=None, help="Address to listen on (default 127.0.0.1).")
@click.option("--port", type=int, default=None, help="Port (default 8700).")
@click.option("--log-level", default="info", show_default=True)
@handle_errors
def hub_serve(hub_dir: Path | None, host: str | None, port: int | None,
              log_level: str) -> None:
    """Serve the hub's API (enrolments, reports, operator commands) and /repo."""
    import uvicorn

    from ..access.tls import uvicorn_tls_kwargs
    from ..http_protocol import LimitedHttpProtocol
    from ..hub.app import create_hub_app
    from ..hub.services import open_hub
    from ..hub.settings import load_hub_settings
    from ..listen import bind_socket
    from ..logging_setup import uvicorn_level

    setup_logging(log_level, "text", access_log=False)
    settings = load_hub_settings(hub_dir, {"host": host, "port": port})
    sock = bind_socket(settings.host, settings.port)
    app = create_hub_app(open_hub(settings))
    tls = uvicorn_tls_kwargs(settings.auth)
    protocol = tls.pop("http", LimitedHttpProtocol).with_limits(settings.http)
    click.echo(f"hub {settings.data_dir} serving on {'https' if tls else 'http'}://"
               f"{settings.host}:{sock.getsockname()[1]}", err=True)
    config = uvicorn.Config(app, loop="asyncio", http=protocol, **tls, log_config=None,
                            access_log=False, log_level=uvicorn_level(log_level),
                            lifespan="on", timeout_keep_alive=int(settings.http.keep_alive_s),
                            timeout_graceful_shutdown=5)
    uvicorn.Server(config).run(sockets=[sock])


@hub.command("enroll-token")
@click.option("--group", required=True, help="The group the box joins.")
@click.option("--ttl", default=None, help="Lifetime: 30m, 1h, 7d (default: enrolment_ttl_s).")
@dir_option
@by_option
@json_option
@handle_errors
def hub_enroll_token(group: str, ttl: str | None, hub_dir: Path | None, by: str | None,
                     as_json: bool) -> None:
    """Print a one-time token that enrols one box into GROUP."""
    from ..hub.enrolment import issue_token
    from .tokens import parse_ttl

    with _hub(hub_dir) as h:
        issued = issue_token(h, group, parse_ttl(ttl) if ttl else None, actor=_actor(by))
    echo_result(issued.to_dict(), as_json, issued.token)


@hub.command("publish")
@click.argument("pkg", type=click.Path(path_type=Path))
@click.option("--url", default=None, help="Upload to the hub at URL instead of --dir.")
@click.option("--token", default=None, envvar="APPLIANCE_HUB_TOKEN",
              help="Bearer token with hub:publish (with --url). Env: APPLIANCE_HUB_TOKEN.")
@dir_option
@by_option
@json_option
@handle_errors
def hub_publish(pkg: Path, url: str | None, token: str | None, hub_dir: Path | None,
                by: str | None, as_json: bool) -> None:
    """Publish the signed package PKG (.tar): encrypted, as a TUF target."""
    if url is not None:
        from ..hub.upload import upload_package

        record = upload_package(url, pkg, token)
    else:
        from ..hub.publish import publish

        with _hub(hub_dir) as h:
            record = publish(h, pkg, actor=_actor(by))
    state = "published" if record["published"] else "already published"
    echo_result(record, as_json, f"{record['model']} version {record['version']} {state} "
                                 f"as {record['target_path']}")


@hub.group("groups")
def hub_groups() -> None:
    """Groups of boxes that run the same versions."""


@hub_groups.command("add")
@click.argument("name")
@click.option("--description", default="", help="What the group is.")
@dir_option
@by_option
@json_option
@handle_errors
def hub_groups_add(name: str, description: str, hub_dir: Path | None, by: str | None,
                   as_json: bool) -> None:
    """Create the group NAME."""
    from ..hub.fleet import add_group

    with _hub(hub_dir) as h:
        group = add_group(h, name, description, actor=_actor(by))
    echo_result(group, as_json, f"group {name} created")


@hub_groups.command("list")
@dir_option
@json_option
@handle_errors
def hub_groups_list(hub_dir: Path | None, as_json: bool) -> None:
    """Every group, its device count and current assignments."""
    from ..hub.fleet import list_groups

    with _hub(hub_dir) as h:
        found = list_groups(h)
    lines = [f"{g['name']:<20} {g['devices']:>5} device(s)  " + ", ".join(
        f"{a['model']} {a['version']} ({a['stage']})" for a in g["assignments"])
        for g in found]
    echo_result(found, as_json, "\n".join(lines) or "no groups: `appliance hub groups add G`")


@hub.command("assign")
@click.argument("group")
@click.argument("model")
@click.argument("version")
@click.option("--stage", required=True, help="registered, shadow, canary or production.")
@dir_option
@by_option
@json_option
@handle_errors
def hub_assign(group: str, model: str, version: str, stage: str, hub_dir: Path | None,
               by: str | None, as_json: bool) -> None:
    """Tell GROUP's boxes to run MODEL VERSION in STAGE."""
    from ..hub.rollout import assign

    with _hub(hub_dir) as h:
        result = assign(h, group, model, version, stage, actor=_actor(by))
    echo_result(result, as_json, f"{group}: {model} {version} ({stage}) assigned; desired "
                                 f"state published for {result['devices']} device(s)")


@hub.command("devices")
@click.option("--group", default=None, help="Only this group's devices.")
@dir_option
@json_option
@handle_errors
def hub_devices(group: str | None, hub_dir: Path | None, as_json: bool) -> None:
    """Devices: last seen, installed versions, health, profile, reports."""
    from ..hub.fleet import list_devices

    with _hub(hub_dir) as h:
        found = list_devices(h, group)
    lines = [f"{d['id']:<26} {d['group']:<12} seen {d['last_seen']}  profile "
             f"{d['profile']}  installed {json.dumps(d['installed'], sort_keys=True)}  "
             f"reports acked {d['reports']['acked_through']}, missing "
             f"{d['reports']['missing']}" for d in found]
    echo_result(found, as_json, "\n".join(lines) or "no devices enrolled")


@hub.command("export-bundle")
@click.option("--group", required=True, help="The group whose boxes the bundle is for.")
@click.argument("out_dir", type=click.Path(path_type=Path))
@dir_option
@by_option
@json_option
@handle_errors
def hub_export_bundle(group: str, out_dir: Path, hub_dir: Path | None, by: str | None,
                      as_json: bool) -> None:
    """Write GROUP's metadata and targets to OUT_DIR (for an air-gapped site)."""
    from ..hub.fleet import export_bundle

    with _hub(hub_dir) as h:
        result = export_bundle(h, group, out_dir, actor=_actor(by))
    echo_result(result, as_json, f"bundle for {len(result['devices'])} device(s) of {group} "
                                 f"written to {out_dir}")


@hub.command("rotate-online-key")
@dir_option
@by_option
@json_option
@handle_errors
def hub_rotate_online_key(hub_dir: Path | None, by: str | None, as_json: bool) -> None:
    """Replace the online key (needs the root key on this machine)."""
    from ..hub.fleet import rotate_online_key

    with _hub(hub_dir) as h:
        result = rotate_online_key(h, actor=_actor(by))
    echo_result(result, as_json, "online key rotated")


@hub.command("trust-publisher")
@click.argument("public_key", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--name", required=True, help="The publisher's name.")
@dir_option
@by_option
@json_option
@handle_errors
def hub_trust_publisher(public_key: Path, name: str, hub_dir: Path | None, by: str | None,
                        as_json: bool) -> None:
    """Trust packages signed by PUBLIC_KEY (Ed25519 PEM) for publishing."""
    from ..hub.fleet import trust_publisher

    with _hub(hub_dir) as h:
        entry = trust_publisher(h, public_key.read_bytes(), name, actor=_actor(by),
                                where=str(public_key))
    echo_result(entry, as_json, f"trusting publisher {name} (key {entry['key_id'][:16]}…)")


@hub.command("audit-verify")
@dir_option
@json_option
@handle_errors
def hub_audit_verify(hub_dir: Path | None, as_json: bool) -> None:
    """Recompute the hub's audit chain; exit 1 when a record was changed."""
    from ..errors import Conflict
    from ..hub.audit_chain import verify_chain

    with _hub(hub_dir) as h:
        result = verify_chain(h.store)
    if not result["ok"]:
        raise Conflict(f"the hub's audit chain is broken: {result['problem']}")
    echo_result(result, as_json, f"audit chain intact: {result['records']} record(s), head "
                                 f"{result['head']}")


@hub.group("token")
def hub_token() -> None:
    """Operator and publisher tokens for the hub's API."""


@hub_token.command("issue")
@click.option("--sub", "subject", required=True, help="Who the token is for.")
@click.option("--scope", "scopes", multiple=True, required=True,
              type=click.Choice(["hub:read", "hub:operate", "hub:publish"]),
              help="A scope to grant (repeatable).")
@click.option("--ttl", default="1h", show_default=True, help="Lifetime: 30m, 1h, 7d.")
@dir_option
@json_option
@handle_errors
def hub_token_issue(subject: str, scopes: tuple[str, ...], ttl: str, hub_dir: Path | None,
                    as_json: bool) -> None:
    """Mint a token signed by the hub's key; prints the token."""
    from ..errors import ConfigError
    from ..hub.services import is_initialised
    from ..hub.settings import load_hub_settings
    from .tokens import mint_token, parse_ttl

    settings = load_hub_settings(hub_dir)
    if not is_initialised(settings.data_dir):
        raise ConfigError(f"{settings.data_dir} holds no hub: create one with `appliance hub "
                          f"init {settings.data_dir}`")
    token, claims = mint_token(settings.data_dir, issuer=settings.auth.local_issuer,
                               audience=settings.auth.local_audience, subject=subject,
                               scopes=list(scopes), roles=[], ttl_s=parse_ttl(ttl))
    click.echo(json.dumps({"token": token, **claims}) if as_json else token)
