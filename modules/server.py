"""Launching the web UI: A1111 launch flags, secure defaults (auth, a limit on failed logins,
deadlines for slow clients and a connection cap), background model load."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import threading
import time
import webbrowser
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modules.a1111_flags import resolve_a1111_flags
from modules.exposure import is_exposed

if TYPE_CHECKING:
    from modules.api.connections import ConnectionPolicy
    from modules.api.login_limit import LoginPolicy

__all__ = ["TEST_LIMITS_ENV", "AuthError", "add_server_flags", "check_exposure", "launch_ui", "parse_auth",
           "server_policies"]

logger = logging.getLogger(__name__)
#: JSON of ``LoginPolicy``/``ConnectionPolicy`` fields to override, for tests only (a lockout of
#: a minute or a 10 s deadline is too long to wait for in a test).
TEST_LIMITS_ENV = "AIGEN_TEST_LIMITS"


class AuthError(ValueError):
    """Bad --gradio-auth / --gradio-auth-path value, or exposure without auth."""


def add_server_flags(parser: argparse.ArgumentParser) -> None:
    """The web server's flags, with A1111's names."""
    parser.add_argument("--listen", action="store_true", help="serve on 0.0.0.0 (needs auth)")
    parser.add_argument("--port", type=int, default=7860, help="port (default 7860)")
    parser.add_argument("--server-name", default=None, help="address to bind (non-loopback needs auth)")
    parser.add_argument("--share", action="store_true", help="public gradio.live link (needs auth)")
    parser.add_argument("--gradio-auth", default=None, help="user:pass[,user2:pass2]")
    parser.add_argument("--gradio-auth-path", type=Path, default=None, help="file of user:pass lines")
    parser.add_argument("--insecure-no-auth", action="store_true",
                        help="allow --listen/--share without auth (anyone reaching the port can use it)")
    parser.add_argument("--api-auth", default=None,
                        help="user:pass[,u2:p2] for /sdapi/v1 (default: the --gradio-auth credentials)")
    parser.add_argument("--nowebui", action="store_true", help="serve only the A1111 REST API (/sdapi/v1)")
    parser.add_argument("--ckpt", default=None, help="checkpoint to load at start")
    parser.add_argument("--enable-insecure-extension-access", action="store_true",
                        help="allow installing extensions from the UI even with --listen/--share/--server-name")
    parser.add_argument("--autolaunch", action="store_true", help="open the browser")


def parse_auth(spec: str | None, path: Path | None) -> list[tuple[str, str]]:
    """Credentials from ``user:pass,user2:pass2`` and/or a file of such entries (one per line)."""
    entries: list[str] = []
    if spec:
        entries += spec.split(",")
    if path is not None:
        try:
            entries += path.read_text(encoding="utf-8").replace(",", "\n").splitlines()
        except OSError as error:
            raise AuthError(f"--gradio-auth-path: cannot read {path}: {error.strerror}") from None
    credentials = []
    for entry in (e.strip() for e in entries):
        if not entry:
            continue
        user, sep, password = entry.partition(":")
        if not sep or not user or not password:
            raise AuthError("--gradio-auth: each entry must be user:password")
        credentials.append((user, password))
    return credentials


def check_exposure(args: argparse.Namespace, credentials: list[tuple[str, str]]) -> None:
    """Refuse to serve beyond this machine without auth, unless explicitly told to."""
    if is_exposed(args.listen, args.share, args.server_name) and not credentials:
        if not args.insecure_no_auth:
            raise AuthError("--listen, --share and --server-name make the UI reachable by others: set "
                            "--gradio-auth user:password (or --gradio-auth-path), or pass --insecure-no-auth")
        logger.warning("SERVING WITHOUT AUTH beyond this machine: anyone who reaches the port can generate "
                       "and read outputs")


def launch_ui(args: argparse.Namespace) -> int:
    """Build the studio and serve the UI until interrupted; returns the exit code."""
    try:
        credentials = parse_auth(args.gradio_auth, args.gradio_auth_path)
        # One auth covers everything: the REST API falls back on the UI's credentials.
        api_credentials = parse_auth(args.api_auth, None) or credentials
        check_exposure(args, credentials if not args.nowebui else api_credentials)
    except AuthError as error:
        print(f"aigen: error: {error}", file=sys.stderr)
        return 2
    # A1111's flags that map onto ours become ours; one line names those applied, one those ignored.
    args, notes = resolve_a1111_flags(args)
    for note in notes:
        print(f"aigen: {note}", file=sys.stderr, flush=True)
    from modules.app import build_app_context
    from modules.settings import SettingsStore
    from modules.studio import Studio
    from modules.ui.app import build_app
    from modules.ui.page_assets import page_css, page_head

    context = build_app_context(args)
    studio = Studio(context, SettingsStore(context.paths.root / "config.json"))
    if args.ckpt:  # the owner's flag may name a file anywhere (a client's request never may)
        try:
            info = context.registry.find(args.ckpt, allow_path=True)
        except LookupError as error:
            print(f"aigen: error: --ckpt: {error}", file=sys.stderr)
            studio.close()
            return 2
        studio.update_settings({"sd_model_checkpoint": context.registry.title(info)})
    from fastapi import APIRouter
    from starlette.middleware import Middleware

    from modules.api.a1111_routes import build_internal_router
    from modules.api.controlnet_routes import add_controlnet_routes
    from modules.api.health import build_health_router
    from modules.api.jobs import build_jobs_router
    from modules.api.limits import BodyLimit
    from modules.api.login_limit import LoginAttempts, LoginLimit
    from modules.api.rest import build_router, decode_image

    login_policy, connection_policy = server_policies(os.environ)
    # The failed-login records belong to this app (one table, shared by the UI's and the API's login).
    middleware = [Middleware(LoginLimit, attempts=LoginAttempts(login_policy)), Middleware(BodyLimit)]
    router = build_router(studio, api_credentials, vars(args))
    health = build_health_router(studio, router.dependencies)
    internal = build_internal_router(router.dependencies)  # A1111's /internal/ping
    jobs = build_jobs_router(studio, decode_image, list(router.dependencies))
    # Extensions' routes sit at the app's root (A1111's /controlnet/...), behind the API's auth.
    extension_routes = APIRouter(dependencies=list(router.dependencies))
    add_controlnet_routes(extension_routes, studio, decode_image)
    if args.nowebui:
        context.scripts.run_callbacks("on_app_started", None, extension_routes)
        return _serve_api_only(args, studio, [router, health, internal, jobs, extension_routes], middleware,
                               connection_policy)
    demo = build_app(studio, theme=getattr(args, "theme", None))  # A1111's --theme
    demo.queue(max_size=64, default_concurrency_limit=1)
    # Before launch, so the routes extensions add are served from the first request (as ours are).
    context.scripts.run_callbacks("on_app_started", demo, extension_routes)
    host = _host(args)
    # The REST routes are part of the app from its first request: added after launch, an early
    # client (or the readiness probe's next call) got a 404.
    routes = [*router.routes, *health.routes, *internal.routes, *jobs.routes, *extension_routes.routes]
    page = {"auth": credentials or None, "css": page_css(), "head": page_head(), "footer_links": ["api"],
            "max_file_size": "50mb", "show_error": True}
    try:
        if args.share:
            wait = _launch_with_share(demo, host, args, page, routes, middleware)
        else:
            wait = _serve_ui(demo, host, args, page, routes, middleware, connection_policy)
        # Only now, with the page being served, start the slow part (diffusers import, weights).
        studio.load_default_in_background()
        wait()
    except KeyboardInterrupt:
        pass
    except OSError as error:  # the port is taken, or the address is not this machine's
        print(f"aigen: error: {error}", file=sys.stderr)
        return 1
    finally:
        studio.close()
    return 0


def server_policies(environ: Mapping[str, str]) -> tuple[LoginPolicy, ConnectionPolicy]:
    """The login and connection limits; ``AIGEN_TEST_LIMITS`` (JSON, fields of either policy)
    shrinks them for tests, which cannot wait out the real ones."""
    from modules.api.connections import ConnectionPolicy
    from modules.api.login_limit import LoginPolicy

    overrides = json.loads(environ.get(TEST_LIMITS_ENV) or "{}")
    login = {k: v for k, v in overrides.items() if k in LoginPolicy.__dataclass_fields__}
    connection = {k: v for k, v in overrides.items() if k in ConnectionPolicy.__dataclass_fields__}
    return LoginPolicy(**login), ConnectionPolicy(**connection)


def _host(args: argparse.Namespace) -> str:
    return "0.0.0.0" if args.listen else (args.server_name or "127.0.0.1")


def _serve_ui(demo: Any, host: str, args: argparse.Namespace, page: dict[str, Any], routes: list[Any],
              middleware: list[Any], policy: ConnectionPolicy) -> Callable[[], None]:
    """Serve the page on our own uvicorn server (``gr.mount_gradio_app``, gradio's way to run
    on a server of one's own), with ``policy``'s deadlines and connection cap; gradio's
    ``launch`` builds a ``uvicorn.Config`` without them. Returns the wait until it stops."""
    import gradio as gr
    from fastapi import FastAPI

    from modules.api.jobs import storage_full_handlers

    app = FastAPI(routes=routes, middleware=middleware, exception_handlers=storage_full_handlers(),  # 507, disk full
                  docs_url="/docs", openapi_url="/openapi.json")
    gr.mount_gradio_app(app, demo, path="/", server_name=host, server_port=args.port, **page)
    wait = _run_server(app, host, args.port, policy)
    url = f"http://{'localhost' if host == '0.0.0.0' else host}:{args.port}/"
    print(f"* Running on local URL:  {url}", flush=True)
    if args.autolaunch:
        webbrowser.open(url)
    return wait


def _launch_with_share(demo: Any, host: str, args: argparse.Namespace, page: dict[str, Any], routes: list[Any],
                       middleware: list[Any]) -> Callable[[], None]:
    """``--share``: gradio's ``launch``, which alone opens the gradio.live tunnel. Its server
    has the login limit and body limit but not our connection deadlines (see ``_serve_ui``)."""
    from modules.api.jobs import storage_full_handlers

    demo.launch(server_name=host, server_port=args.port, share=True, inbrowser=args.autolaunch, quiet=False,
                prevent_thread_lock=True, **page,
                app_kwargs={"routes": routes, "middleware": middleware, "exception_handlers": storage_full_handlers(),
                            "docs_url": "/docs", "openapi_url": "/openapi.json"})
    if not demo.share_url:
        _report_share_failure(demo.local_url)
    return demo.block_thread


def _report_share_failure(local_url: str | None) -> None:
    """Say plainly that ``--share`` failed and the server goes on locally.

    Gradio catches the failure itself and keeps serving, but offline its message is about a
    missing tunnel binary and antivirus software, which sends users looking in the wrong place.
    """
    print(f"aigen: could not create the public --share link: the gradio.live share service is unreachable "
          f"(no internet connection, or a firewall or proxy blocks it). The UI is still served at {local_url}",
          file=sys.stderr, flush=True)


def _serve_api_only(args: argparse.Namespace, studio: Any, routers: list[Any], middleware: list[Any],
                    policy: ConnectionPolicy) -> int:
    """``--nowebui``: the REST API (and the routes extensions added) alone, on the same server setup."""
    from fastapi import FastAPI

    from modules.api.jobs import storage_full_handlers

    app = FastAPI(title="AIGen Studio API", middleware=middleware, exception_handlers=storage_full_handlers())
    for router in routers:  # REST, /health, /api/v1/jobs, then the routes extensions added
        app.include_router(router)
    try:
        wait = _run_server(app, _host(args), args.port, policy)
        studio.load_default_in_background()
        wait()
    except KeyboardInterrupt:
        pass
    finally:
        studio.close()
    return 0


def _run_server(app: Any, host: str, port: int, policy: ConnectionPolicy) -> Callable[[], None]:
    """Start uvicorn on a thread (the main thread keeps Ctrl+C), wait until it listens, and
    return the wait until it stops.

    Raises:
        OSError: the server could not start (the port is taken, the address is not this machine's).
    """
    import uvicorn

    from modules.api.connections import server_config

    server = uvicorn.Server(server_config(app, host, port, policy))
    thread = threading.Thread(target=server.run, name="uvicorn", daemon=True)
    thread.start()
    while not server.started:
        if not thread.is_alive():
            raise OSError(f"could not serve on {host}:{port} (is the port in use?)")
        time.sleep(0.01)
    return _waiter(thread, server)


def _waiter(thread: threading.Thread, server: Any) -> Callable[[], None]:
    """A function that blocks until the server's thread ends; Ctrl+C stops the server first."""

    def wait() -> None:
        try:
            while thread.is_alive():
                thread.join(0.5)  # a timed join, so that Ctrl+C reaches this (the main) thread
        except KeyboardInterrupt:
            server.should_exit = True
            thread.join(10)

    return wait
