"""`python -m sandbox --host 127.0.0.1 --port 8090`: run the provider sandbox under uvicorn."""

from __future__ import annotations

import argparse
import dataclasses
import logging

import uvicorn

from sandbox.app import build_sandbox_app
from sandbox.settings import SandboxSettings


class _PathOnly(logging.Filter):
    """The access log without query strings: callers put OAuth codes, client secrets and
    tokens there, and these logs land in `.data/logs/` beside ours."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) == 5 and isinstance(args[2], str):
            record.args = (args[0], args[1], args[2].split("?", 1)[0], args[3], args[4])
        return True


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m sandbox", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8090)
    parser.add_argument("--waha-api-key", help="overrides SANDBOX_WAHA_API_KEY")
    parser.add_argument("--log-level", default="info")
    args = parser.parse_args(argv)
    settings = SandboxSettings.from_env()
    if args.waha_api_key:
        settings = dataclasses.replace(
            settings, waha=dataclasses.replace(settings.waha, api_key=args.waha_api_key)
        )
    logging.getLogger("uvicorn.access").addFilter(_PathOnly())
    uvicorn.run(
        build_sandbox_app(settings), host=args.host, port=args.port, log_level=args.log_level
    )


if __name__ == "__main__":
    main()
