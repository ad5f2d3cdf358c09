"""``python -m stream_outbox.emulator [--port 8765] [--api-key K] [--api-secret S]``."""

from __future__ import annotations

import argparse

from stream_outbox.emulator.config import DEFAULT_API_KEY, DEFAULT_API_SECRET, DEFAULT_HOST
from stream_outbox.emulator.emulator import run_cli


def main(argv: list[str] | None = None) -> None:
    """Parse arguments and serve until Ctrl-C."""
    parser = argparse.ArgumentParser(prog="python -m stream_outbox.emulator", description=__doc__)
    parser.add_argument("--host", default=DEFAULT_HOST)
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--api-key", default=DEFAULT_API_KEY)
    parser.add_argument("--api-secret", default=DEFAULT_API_SECRET)
    args = parser.parse_args(argv)
    run_cli(port=args.port, api_key=args.api_key, api_secret=args.api_secret, host=args.host)


if __name__ == "__main__":
    main()
