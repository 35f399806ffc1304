"""``python -m training`` / ``emotion-train``: train one model iteration (see ``training.train``)."""

from __future__ import annotations

from training.train import cli


def main(argv: list[str] | None = None) -> int:
    return cli(argv)


if __name__ == "__main__":
    raise SystemExit(main())
