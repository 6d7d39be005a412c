"""`appliance serve`."""

from __future__ import annotations

from typing import Any

import click

from ..listen import bind_socket
from . import data_dir_option, handle_errors, log, main, settings_from, setup_logging


@main.command()
@click.option("--host", default=None, help="Address to bind. Default 127.0.0.1.")
@click.option("--port", type=int, default=None, help="Port. Default 8000.")
@data_dir_option
@click.option("--demo/--no-demo", "demo_models", default=None,
              help="Register the demo models when the registry is empty (default on).")
@click.option("--profile", default=None, help="Hardware profile name to use.")
@click.pass_context
@handle_errors
def serve(ctx: click.Context, **cli: Any) -> None:
    """Serve the registered models over REST (Open Inference Protocol v2)."""
    import uvicorn

    from ..access.auth_settings import open_warning
    from ..access.tls import uvicorn_tls_kwargs
    from ..api import create_app
    from ..http_limits import raise_descriptor_limit
    from ..http_protocol import LimitedHttpProtocol
    from ..services import build_services, seed_demo_models

    settings = settings_from(ctx, **cli)
    setup_logging(settings.log_level)
    nofile = raise_descriptor_limit()  # up to the hard limit (systemd: LimitNOFILE=)
    sock = bind_socket(settings.host, settings.port)
    services = build_services(settings)
    log.info("hardware profile %s (%s)", services.hardware.match.profile.name,
             "; ".join(services.hardware.match.reasons[:1]))
    if settings.demo_models:
        added = seed_demo_models(services)
        if added:
            log.info("registered demo models: %s", ", ".join(added))
    app = create_app(services)
    warning = open_warning(settings.auth, settings.host)
    if warning:
        log.warning("%s", warning)
    tls = uvicorn_tls_kwargs(settings.auth)  # {} without auth.tls_cert
    # the connection, header and body limits of [http]; ClientCertProtocol with TLS
    protocol = tls.pop("http", LimitedHttpProtocol).with_limits(settings.http, nofile)
    log.info("serving on %s://%s:%d (data dir %s; at most %d connections, descriptor "
             "limit %d)", "https" if tls else "http", settings.host, sock.getsockname()[1],
             settings.data_dir.resolve(), protocol.cap, nofile)
    config = uvicorn.Config(app, loop="uvloop", http=protocol, **tls,
                            access_log=False, log_level="warning", lifespan="on",
                            timeout_keep_alive=int(settings.http.keep_alive_s),
                            timeout_graceful_shutdown=5)
    uvicorn.Server(config).run(sockets=[sock])
