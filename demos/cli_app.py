"""`livelearner app`: serve the page on this machine, the LAN, or a Gradio share link.

A share link or a non-loopback host exposes the camera page to other people, so it requires a
password: `--auth user:pass`, or one is generated and printed. Models load in the background
after the page is up (the status line on the page shows them loading).
"""
from __future__ import annotations

import argparse
import secrets
import socket
import sys
from pathlib import Path

from demos.cli import UserFacingError

LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
DEFAULT_USER = "team"


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("app", help="serve the web page (webcam, speech, questions, train, review, monitor)",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--port", type=int, default=7860, help="TCP port (default 7860)")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on: 127.0.0.1 (this machine only, default) or 0.0.0.0 (LAN, needs a password)")
    p.add_argument("--share", action="store_true", help="create a public gradio.live link (needs internet; password required)")
    p.add_argument("--auth", metavar="USER:PASS", help="login for teammates (generated if --share or a LAN host is used without it)")
    p.add_argument("--data-dir", type=Path, default=None,
                   help="where samples, the review queue and trained models are kept (default $LIVELEARNER_HOME/app)")
    p.add_argument("--max-streams", type=int, default=16, help="live frames and audio chunks handled at once (default 16)")
    p.add_argument("--max-file-size", default="25mb", help="largest upload accepted (default 25mb)")
    p.add_argument("--accept-at", type=float, default=0.9,
                   help="auto-accept predictions whose calibrated top probability is at least this; the band below "
                        "it (down to the abstain floor) goes to the Review tab (default 0.9)")
    p.add_argument("--no-preload", action="store_true", help="load models on first use instead of right after start")
    p.set_defaults(func=run)


def parse_auth(text: str | None) -> tuple[str, str] | None:
    if text is None:
        return None
    user, sep, password = text.partition(":")
    if not sep or not user or not password:
        raise UserFacingError("--auth must look like USER:PASSWORD (both non-empty), e.g. --auth team:s3cret")
    return user, password


def needs_password(host: str, share: bool) -> bool:
    return share or host not in LOOPBACK_HOSTS


def lan_address() -> str | None:
    """This machine's address on the LAN (no packet is sent: UDP connect only picks a route)."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect(("10.255.255.255", 1))
            return s.getsockname()[0]
    except OSError:
        return None


def run(args: argparse.Namespace) -> int:
    auth = parse_auth(args.auth)
    if auth is None and needs_password(args.host, args.share):
        auth = (DEFAULT_USER, secrets.token_urlsafe(9))
        print(f"A password is required when the page is reachable by others. Log in with\n"
              f"    user: {auth[0]}\n    password: {auth[1]}\n(choose your own with --auth USER:PASS)", flush=True)

    print("Building the page (models load in the background once it is up)…", flush=True)
    from demos.app import build_demo
    from demos.context import AppSettings, default_data_dir
    from demos.review import ReviewSettings

    if not 0.0 < args.accept_at <= 1.0:
        raise UserFacingError(f"--accept-at must be in (0, 1], got {args.accept_at}")
    settings = AppSettings(data_dir=args.data_dir or default_data_dir(), max_streams=args.max_streams,
                           max_file_size=args.max_file_size, review=ReviewSettings(accept_at=args.accept_at),
                           preload=() if args.no_preload else AppSettings().preload,
                           local_camera=not needs_password(args.host, args.share))
    # Gradio decodes the browser's webcam frames itself (PIL), before our handlers: PIL's own bound
    # refuses frames past twice this many pixels, so no request can make it decode a giant image
    from PIL import Image

    from capture.images import MAX_IMAGE_PIXELS

    Image.MAX_IMAGE_PIXELS = MAX_IMAGE_PIXELS
    try:
        demo = build_demo(settings)
    except OSError as e:
        raise UserFacingError(str(e)) from e
    try:
        _, local_url, share_url = demo.launch(
            server_name=args.host, server_port=args.port, share=args.share, auth=auth,
            max_file_size=settings.max_file_size, prevent_thread_lock=True,
            show_error=False,  # only our gr.Error messages reach the page: never a server path or traceback
            ssr_mode=False, quiet=True, footer_links=["api"],
            run_history=False,  # Gradio would otherwise record every webcam frame's run
        )
    except OSError as e:
        raise UserFacingError(f"Cannot listen on {args.host}:{args.port} ({e}); pick another --port.") from e

    ctx = demo.livelearner_context
    if settings.preload:
        ctx.hub.preload(settings.preload)
    print(f"\nlivelearner is up: {local_url}", flush=True)
    if args.host == "0.0.0.0":
        ip = lan_address()
        print(f"Teammates on the same network: http://{ip or 'THIS-MACHINE-IP'}:{args.port}", flush=True)
    if args.share:
        if share_url:
            print(f"Share link (valid up to a week, password protected): {share_url}", flush=True)
        else:
            print("\nCould not create a share link: the gradio.live tunnel needs internet access (and the frpc "
                  "binary Gradio downloads on first use). Use LAN mode instead, for teammates on the same network:\n"
                  f"    livelearner app --host 0.0.0.0 --port {args.port}" + (" --auth USER:PASS" if args.auth is None else ""),
                  file=sys.stderr, flush=True)
    print("Press Ctrl+C to stop.", flush=True)
    try:
        demo.block_thread()
    except KeyboardInterrupt:
        pass
    finally:
        demo.close()
    return 0
