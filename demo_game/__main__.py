"""``emotion-demo`` / ``python -m demo_game``: parse the flags, set up logging, play."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Sequence

from demo_game.config import config_from_args


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``emotion-demo`` console script; returns the exit code."""
    config, level = config_from_args(argv)
    logging.basicConfig(
        level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
    from demo_game.game import Game  # pygame loads here, after --help has had its chance
    from demo_game.script import ScriptError

    try:
        game = Game(config)
    except ScriptError as exc:
        print(f"emotion-demo: bad --script: {exc}", file=sys.stderr)
        return 2
    return game.run()


if __name__ == "__main__":
    sys.exit(main())
