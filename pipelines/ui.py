"""A local web page to make clips, fit persons and run batches without the command line.

    python cli.py ui                      # then open http://127.0.0.1:7860
    python cli.py ui --port 8000 --device cpu

Needs the `ui` extra (pip install -e ".[ui]": Gradio, whose page ships in its wheel; nothing is
fetched at run time). The page is served on 127.0.0.1 only, never through a public share link;
--host 0.0.0.0 serves it to the network, where anyone who reaches it can make clips and fits
with this computer (and fetch the files the page shows). Tabs: Say (text or audio -> video),
Fit a person (the resumable train-person job, running in the background: it survives closing
the page, and the page shows it again by the person's name), Batch (a jobs.jsonl -> clips and a
zip). Each request writes into its own new folder under $AVATAR_HOME/ui; installed piper voices
are the .onnx files in $AVATAR_HOME/voices.
"""
from __future__ import annotations

import argparse
import os

from avatar.errors import AvatarError

LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--port", type=int, default=7860, help="port to serve on (default 7860)")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to serve on (default 127.0.0.1: this computer only)")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda for every job (default auto)")
    p.add_argument("--audio2expr", help="audio-to-expression checkpoint folder "
                   "(default: the shipped checkpoints/audio2expr)")
    p.add_argument("--max-upload-mb", type=float, default=500.0,
                   help="largest upload accepted, in megabytes (default 500)")


def run(args) -> int:
    if not 1 <= args.port <= 65535:
        raise AvatarError(f"--port {args.port} is out of range; use 1 to 65535")
    if not 0 < args.max_upload_mb <= 100_000:
        raise AvatarError(f"--max-upload-mb {args.max_upload_mb:g} is out of range; use up to 100000")
    check_port_free(args.host, args.port)
    page, launch = build_page(args)
    if args.host not in LOCAL_HOSTS:
        print(f"warning: serving to the network on {args.host}: anyone who reaches port "
              f"{args.port} can make clips and fits with this computer and fetch what the page "
              "shows", flush=True)
    print(f"serving the avatar-toolkit page on http://{args.host}:{args.port} (Ctrl-C stops the "
          "page; fits and batches started from it keep running)", flush=True)
    page.launch(**launch)
    return 0


def check_port_free(host: str, port: int) -> None:
    import socket
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as e:
        raise AvatarError(f"--host {host!r} is not an address of this computer ({e.strerror})") from None
    family, kind, _, _, address = infos[0]
    with socket.socket(family, kind) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as e:
            raise AvatarError(f"cannot serve on {host}:{port} ({e.strerror}); is the page already "
                              "running? pick another --port") from None


def build_page(args):
    """(the Gradio page, launch keyword arguments) for the command's options."""
    from avatar.io import person as person_io
    from pipelines import ui_files
    from pipelines.ui_say import ServerOptions

    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"       # offline: no telemetry, no version check
    os.environ.setdefault("GRADIO_TEMP_DIR", str(ui_files.ui_root() / "gradio"))
    try:
        from pipelines import ui_app
    except ImportError as e:
        raise AvatarError(f"the web page needs the ui extra ({e.name} is missing): "
                          "pip install -e \".[ui]\"") from None
    options = ServerOptions(args.device, args.audio2expr, args.max_upload_mb)
    served = [ui_files.ui_root(), person_io.user_persons_root(), person_io.shipped_persons_root(),
              person_io.runs_root()]
    launch = {"server_name": args.host, "server_port": args.port, "share": False,
              "inbrowser": False, "show_error": False, "quiet": True, "ssr_mode": False,
              "allowed_paths": [str(p) for p in served], "max_file_size": f"{args.max_upload_mb:g}mb",
              "footer_links": [], "theme": "default", "css": ui_app.CSS}
    return ui_app.build(options), launch
