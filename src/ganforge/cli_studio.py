"""`ganforge studio [FOLDER]`: the web studio, served with uvicorn (see ganforge.studio)."""

from __future__ import annotations

import ipaddress
import sys

SWITCH_INTERVAL = 0.0002  # seconds; see `_run_studio`


def add_studio_command(commands) -> None:
    p = commands.add_parser(
        "studio", help="a local web app to bring images, train, watch, play with and share your GANs",
        description="Start the studio over FOLDER (made if missing: datasets/, runs/, models/ and studio.db inside) "
                    "and print its address. It listens on 127.0.0.1 only, unless --host says otherwise; then a "
                    "token is required (generated and printed when not given). Every model is private until you "
                    "mark it shareable on its page.")
    p.add_argument("folder", nargs="?", default="ganforge-studio", metavar="FOLDER")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: %(default)s; 0.0.0.0: your network)")
    p.add_argument("--port", type=int, default=8765, help="(default: %(default)s)")
    p.add_argument("--token", help="the token others must give (default on another --host: a new random one)")
    p.add_argument("--database", metavar="URL", help="a SQLAlchemy URL, e.g. postgresql://user@host/db (default: "
                                                     "FOLDER/studio.db, SQLite)")
    p.add_argument("--rate", type=float, default=20.0, help="requests a second per client other than you (default: %(default)s)")
    p.add_argument("--jobs", type=int, default=1, help="training jobs at once; more wait in a queue (default: %(default)s)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default: %(default)s)")
    p.set_defaults(handler=_run_studio)


def _run_studio(args) -> int:
    import uvicorn

    from ganforge.errors import GanforgeError
    from ganforge.studio.app import create_app
    from ganforge.studio.security import new_token

    local = _loopback(args.host)
    token = args.token or (None if local else new_token())
    if not 1 <= args.port <= 65535:
        raise GanforgeError(f"--port {args.port}: use a port from 1 to 65535 (8765 is the default).")
    app = create_app(args.folder, database=args.database, token=token, rate=args.rate, device=args.device,
                     parallel_jobs=args.jobs)
    shown = "127.0.0.1" if args.host in ("0.0.0.0", "::") else args.host
    address = f"http://{shown}:{args.port}/" + (f"?token={token}" if token else "")
    print(f"ganforge studio over {app.state.studio.folder.root}")
    print(f"Open {address}")
    if token and not local:
        print(f"Others on your network: http://<this computer's address>:{args.port}/?token={token}")
    sys.stdout.flush()
    # The model thread gives the GIL back between every operation and must get it back quickly: at Python's
    # default 5 ms switch interval it waits behind the HTTP and encoding threads, which cost 10-15 % of the
    # images served at concurrency 32 on 2 cores (benchmarks/bench_studio.py).
    sys.setswitchinterval(SWITCH_INTERVAL)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", access_log=False)
    return 0


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
