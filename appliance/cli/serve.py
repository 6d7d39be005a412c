"""`appliance serve`."""

from __future__ import annotations

from typing import Any

import click

from ..listen import bind_socket
from ..logging_setup import FORMATS, LEVELS, uvicorn_level
from . import data_dir_option, handle_errors, log, main, settings_from, setup_logging


@main.command()
@click.option("--host", default=None, help="Address to bind. Default 127.0.0.1.")
@click.option("--port", type=int, default=None, help="Port. Default 8000.")
@data_dir_option
@click.option("--demo/--no-demo", "demo_models", default=None,
              help="Register the demo models when the registry is empty (default on).")
@click.option("--profile", default=None, help="Hardware profile name to use.")
@click.option("--log-level", type=click.Choice(LEVELS, case_sensitive=False), default=None,
              help="Log level. [logging] level; env APPLIANCE_LOG_LEVEL. Default info.")
@click.option("--log-format", type=click.Choice(FORMATS, case_sensitive=False), default=None,
              help="text, or json: one JSON object per line. [logging] format; env "
                   "APPLIANCE_LOG_FORMAT. Default text.")
@click.option("--access-log/--no-access-log", default=None,
              help="One log line per HTTP request. [logging] access_log; env "
                   "APPLIANCE_ACCESS_LOG. Default off.")
@click.pass_context
@handle_errors
def serve(ctx: click.Context, log_level: str | None, log_format: str | None,
          access_log: bool | None, **cli: Any) -> None:
    """Serve the registered models over REST (Open Inference Protocol v2)."""
    import uvicorn

    from ..access.auth_settings import open_warning
    from ..access.tls import uvicorn_tls_kwargs
    from ..api import create_app
    from ..api.access_log import AccessLog
    from ..http_limits import raise_descriptor_limit
    from ..http_protocol import LimitedHttpProtocol
    from ..services import build_services, seed_demo_models

    section = {"level": log_level, "format": log_format, "access_log": access_log}
    section = {k: v for k, v in section.items() if v is not None}
    settings = settings_from(ctx, **cli, logging=section or None)
    logging_ = settings.logging
    assert logging_.level is not None  # load_settings resolves it
    setup_logging(logging_.level, logging_.format, access_log=logging_.access_log)
    nofile = raise_descriptor_limit()  # up to the hard limit (systemd: LimitNOFILE=)
    sock = bind_socket(settings.host, settings.port)
    services = build_services(settings)
    log.info("hardware profile %s (%s)", services.hardware.match.profile.name,
             "; ".join(services.hardware.match.reasons[:1]))
    if settings.demo_models:
        added = seed_demo_models(services)
        if added:
            log.info("registered demo models: %s", ", ".join(added))
    front = create_app(services)
    # the access log wraps the app only when on: off, the request path does not pay for it
    app: Any = AccessLog(front) if logging_.access_log else front
    warning = open_warning(settings.auth, settings.host)
    if warning:
        log.warning("%s", warning)
    tls = uvicorn_tls_kwargs(settings.auth)  # {} without auth.tls_cert
    # the connection, header and body limits of [http]; ClientCertProtocol with TLS
    protocol = tls.pop("http", LimitedHttpProtocol).with_limits(settings.http, nofile)
    log.info("serving on %s://%s:%d (data dir %s; at most %d connections, descriptor "
             "limit %d)", "https" if tls else "http", settings.host, sock.getsockname()[1],
             settings.data_dir.resolve(), protocol.cap, nofile)
    # log_config=None: uvicorn's loggers go through the appliance's handler and format
    config = uvicorn.Config(app, loop="uvloop", http=protocol, **tls, log_config=None,
                            access_log=False, log_level=uvicorn_level(logging_.level),
                            lifespan="on", timeout_keep_alive=int(settings.http.keep_alive_s),
                            timeout_graceful_shutdown=5)
    uvicorn.Server(config).run(sockets=[sock])
