"""``python -m examples.chat_app [--browser]``: the chat page's stack, until Ctrl-C.

Starts the emulator, the app, the relay, the worker and the inbound receiver on a scratch
database (:mod:`examples.chat_app.stack`) and prints the pages to open as the two users.
``--browser`` builds the page first when it is not built.
"""

from __future__ import annotations

import argparse
import shutil
import signal
import subprocess
import sys
import threading
from types import FrameType

from sqlalchemy.exc import SQLAlchemyError

from examples.chat_app.page import FRONTEND, FRONTEND_DIST
from examples.chat_app.stack import Stack, StackError, running_stack


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.browser and not (FRONTEND_DIST / "index.html").is_file():
            _build_page()
        with running_stack(
            database_url=args.database_url, port=args.port, latency_ms=args.latency_ms
        ) as stack:
            _print(stack)
            _wait_for_stop()
            print("stopping...", flush=True)
    except (StackError, SQLAlchemyError, OSError, subprocess.CalledProcessError) as exc:
        print(f"error: {_message(exc)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # while starting: everything started is stopped
        return 130
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m examples.chat_app", description=__doc__)
    parser.add_argument(
        "--browser",
        action="store_true",
        help="build the page first when examples/frontend/dist is missing (npm ci, npm run build)",
    )
    parser.add_argument("--port", type=int, default=8000, help="the app's port (0: any free one)")
    parser.add_argument(
        "--database-url",
        help="use this database as it is (default: a scratch database on DATABASE_URL's "
        "server, or local PostgreSQL, dropped at the end)",
    )
    parser.add_argument(
        "--latency-ms", type=float, default=0.0, help="latency added to every emulator call"
    )
    return parser


def _build_page() -> None:
    if shutil.which("npm") is None:
        raise OSError("npm is not installed: the page needs Node.js 20.19 or later to build")
    print(f"building the page in {FRONTEND} (npm ci, npm run build)...", flush=True)
    for command in (["npm", "ci", "--no-audit", "--no-fund"], ["npm", "run", "build"]):
        subprocess.run(command, cwd=FRONTEND, check=True)


def _print(stack: Stack) -> None:
    cast, page = stack.cast, stack.page_url
    lines = [
        f"The chat page, against the Stream emulator at {stack.emulator.base_url}:",
        "",
        "A conversation in Stream; open each in a window of its own:",
        f"  Olga Organizer  {page(cast.organizer, cast.conversation)}",
        f"  Gus Guest       {page(cast.guest, cast.conversation)}",
        "",
        "A conversation from before go-live, not in Stream: it migrates when opened:",
        f"  Olga Organizer  {page(cast.organizer, cast.legacy)}",
        f"  Gus Guest       {page(cast.guest, cast.legacy)}",
        "",
        f"The old page's endpoint: POST {stack.app_url}/chat/conversations/<id>/messages "
        'with X-Demo-User: <user id> and {"content": "..."}',
        f"Logs of the relay, the worker and the inbound receiver: {stack.logs}",
        "Ctrl-C stops it all.",
    ]
    print("\n".join(lines), flush=True)


def _wait_for_stop() -> None:
    """Until Ctrl-C or SIGTERM."""
    stopped = threading.Event()

    def stop(signum: int, frame: FrameType | None) -> None:
        stopped.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, stop)
    while not stopped.wait(1.0):
        pass


def _message(exc: BaseException) -> str:
    if isinstance(exc, StackError):
        return str(exc)  # with the end of the failed process's log
    cause = getattr(exc, "orig", None) or exc
    return (str(cause).strip().splitlines() or [type(exc).__name__])[0]


if __name__ == "__main__":
    sys.exit(main())
