"""Bare e-mail submission: `concurrency` loops each sending its share of `messages` with
aiosmtplib the way our worker does (connect, EHLO, STARTTLS with certificate verification,
AUTH, MAIL/RCPT/DATA, QUIT per message), the same message bytes, to the same sink. No queue,
no database, no token or password decryption: what submission alone costs.

`python -m bench.baselines.smtp_send` with JSON config on stdin (host, port, ca_file, user,
password, messages, concurrency, message); runs on the server core and prints {"result": ...}.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from typing import Any

import aiosmtplib

from bench.load.common import run


async def main(config: dict[str, Any]) -> dict[str, Any]:
    context = ssl.create_default_context(cafile=config["ca_file"])
    message = str(config["message"]).encode()
    remaining = int(config["messages"])
    sent = 0

    async def loop() -> None:
        nonlocal remaining, sent
        while remaining > 0:
            remaining -= 1
            await aiosmtplib.send(
                message,
                sender=config["user"],
                recipients=["cliente@bench.example"],
                hostname=config["host"],
                port=int(config["port"]),
                start_tls=True,
                tls_context=context,
                username=config["user"],
                password=config["password"],
            )
            sent += 1

    started = time.perf_counter()
    await asyncio.gather(*(loop() for _ in range(int(config["concurrency"]))))
    elapsed = time.perf_counter() - started
    return {"messages": sent, "seconds": round(elapsed, 3), "per_s": round(sent / elapsed, 1)}


if __name__ == "__main__":
    run(main)
