"""Launching the web UI: A1111 launch flags, secure defaults, background model load."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

from modules.a1111_flags import resolve_a1111_flags
from modules.exposure import is_exposed

__all__ = ["AuthError", "add_server_flags", "check_exposure", "launch_ui", "parse_auth"]

logger = logging.getLogger(__name__)


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
    from modules.api.rest import build_router, decode_image

    router = build_router(studio, api_credentials, vars(args))
    health = build_health_router(studio, router.dependencies)
    internal = build_internal_router(router.dependencies)  # A1111's /internal/ping
    jobs = build_jobs_router(studio, decode_image, list(router.dependencies))
    # Extensions' routes sit at the app's root (A1111's /controlnet/...), behind the API's auth.
    extension_routes = APIRouter(dependencies=list(router.dependencies))
    add_controlnet_routes(extension_routes, studio, decode_image)
    if args.nowebui:
        context.scripts.run_callbacks("on_app_started", None, extension_routes)
        return _serve_api_only(args, studio, [router, health, internal, jobs, extension_routes])
    demo = build_app(studio, theme=getattr(args, "theme", None))  # A1111's --theme
    demo.queue(max_size=64, default_concurrency_limit=1)
    # Before launch, so the routes extensions add are served from the first request (as ours are).
    context.scripts.run_callbacks("on_app_started", demo, extension_routes)
    host = "0.0.0.0" if args.listen else (args.server_name or "127.0.0.1")
    try:
        demo.launch(server_name=host, server_port=args.port, share=args.share, auth=credentials or None,
                    inbrowser=args.autolaunch, css=page_css(), head=page_head(), footer_links=["api"],
                    max_file_size="50mb", show_error=True, quiet=False, prevent_thread_lock=True,
                    # The REST routes are part of the app from its first request: added after
                    # launch, an early client (or the readiness probe's next call) got a 404.
                    app_kwargs={"routes": [*router.routes, *health.routes, *internal.routes, *jobs.routes,
                                                  *extension_routes.routes],
                                       "middleware": [Middleware(BodyLimit)],
                                       "docs_url": "/docs", "openapi_url": "/openapi.json"})
        if args.share and not demo.share_url:
            _report_share_failure(demo.local_url)
        # Only now, with the page being served, start the slow part (diffusers import, weights).
        studio.load_default_in_background()
        demo.block_thread()
    except KeyboardInterrupt:
        pass
    finally:
        studio.close()
    return 0


def _report_share_failure(local_url: str | None) -> None:
    """Say plainly that ``--share`` failed and the server goes on locally.

    Gradio catches the failure itself and keeps serving, but offline its message is about a
    missing tunnel binary and antivirus software, which sends users looking in the wrong place.
    """
    print(f"aigen: could not create the public --share link: the gradio.live share service is unreachable "
          f"(no internet connection, or a firewall or proxy blocks it). The UI is still served at {local_url}",
          file=sys.stderr, flush=True)


def _serve_api_only(args: argparse.Namespace, studio: Any, routers: list[Any]) -> int:
    """``--nowebui``: the REST API (and the routes extensions added) alone, on uvicorn."""
    import uvicorn
    from fastapi import FastAPI
    from starlette.middleware import Middleware

    from modules.api.limits import BodyLimit

    app = FastAPI(title="AIGen Studio API", middleware=[Middleware(BodyLimit)])
    for router in routers:  # REST, /health, /api/v1/jobs, then the routes extensions added
        app.include_router(router)
    studio.load_default_in_background()
    host = "0.0.0.0" if args.listen else (args.server_name or "127.0.0.1")
    try:
        uvicorn.run(app, host=host, port=args.port, log_level="warning")
    finally:
        studio.close()
    return 0
