"""``emotiond`` / ``python -m daemon``: run the daemon, or ``emotiond status`` to query one.

emotiond --help                      every option, with its default and environment variable
emotiond --source sample --llm none  the bundled faces, summaries only
emotiond status                      a running daemon's status as JSON (exit 1: none answered)
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import time
from collections.abc import Sequence
from types import FrameType

from daemon.app import EXIT_CONFIG, EXIT_ERROR, EXIT_OK, App, StartupError
from daemon.config import ConfigError, load_config

log = logging.getLogger("daemon")


def configure_logging(level: str) -> None:
    """The application (not a library) sets up logging: one line per record on stderr."""
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
        force=True,
    )


def _install_signal_handlers(app: App) -> None:
    def on_signal(signum: int, frame: FrameType | None) -> None:
        if app.stop_event.is_set():
            log.warning("%s again: already stopping", signal.Signals(signum).name)
            return
        log.info("%s received: stopping", signal.Signals(signum).name)
        app.stop_event.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)


def run_daemon(argv: Sequence[str]) -> int:
    try:
        config = load_config(argv, os.environ)
    except ConfigError as exc:
        print(f"emotiond: configuration error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    configure_logging(config.log_level)
    app = App(config)
    _install_signal_handlers(app)
    try:
        app.start()
    except StartupError as exc:
        log.error("%s", exc.message)
        return exc.exit_code
    except Exception:  # noqa: BLE001 - report, do not dump a bare traceback on the user
        log.exception("emotiond failed to start")
        return EXIT_ERROR
    return app.run()


def status_command(argv: Sequence[str]) -> int:
    """Ask a running daemon for its status and print it as JSON."""
    import zmq

    from game_sdk import protocol

    parser = argparse.ArgumentParser(
        prog="emotiond status", description="Print a running emotiond's status as JSON."
    )
    parser.add_argument(
        "--control",
        default=os.environ.get("EMOTIOND_CONTROL", protocol.DEFAULT_CONTROL_ENDPOINT),
        help="the daemon's control endpoint (default: $EMOTIOND_CONTROL or %(default)s)",
    )
    parser.add_argument("--timeout", type=float, default=2.0, help="seconds to wait (default 2)")
    args = parser.parse_args(list(argv))

    ctx = zmq.Context()
    sock = ctx.socket(zmq.DEALER)
    client_id = f"emotiond-status-{os.getpid()}"
    sock.setsockopt(zmq.ROUTING_ID, client_id.encode())
    protocol.configure_socket(sock, "dealer")
    try:
        sock.connect(args.control)
        request = protocol.make_message("get_status", {}, seq=1, client=client_id)
        sock.send(protocol.encode(request), zmq.NOBLOCK)
        deadline = time.monotonic() + args.timeout
        while (left := deadline - time.monotonic()) > 0:
            if not sock.poll(int(left * 1000) + 1):
                break
            try:
                reply = protocol.decode(sock.recv(zmq.NOBLOCK))
            except protocol.ProtocolError as exc:
                print(f"emotiond status: bad answer: {exc}", file=sys.stderr)
                return EXIT_ERROR
            if reply.get("ref") != request["id"]:
                continue
            if reply["type"] == "error":
                print(f"emotiond status: refused: {reply['body']['message']}", file=sys.stderr)
                return EXIT_ERROR
            print(json.dumps(reply["body"], indent=2, sort_keys=True, default=str))
            return EXIT_OK
        print(
            f"emotiond status: no daemon answered at {args.control} within {args.timeout:g} s. "
            "Is it running? Start it with `emotiond`.",
            file=sys.stderr,
        )
        return EXIT_ERROR
    except zmq.ZMQError as exc:
        print(f"emotiond status: {exc}", file=sys.stderr)
        return EXIT_ERROR
    finally:
        sock.close(linger=0)
        ctx.term()


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``emotiond`` console script; returns the exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        if args[:1] == ["status"]:
            return status_command(args[1:])
        return run_daemon(args)
    except SystemExit as exc:  # --help, or argparse's own usage errors in `status`
        return exc.code if isinstance(exc.code, int) else EXIT_CONFIG


if __name__ == "__main__":
    sys.exit(main())
