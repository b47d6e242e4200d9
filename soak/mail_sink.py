"""The soak's mail server: a real aiosmtpd (STARTTLS required, AUTH, the bench's test CA) that
remembers when each message arrived, by its Subject, so the reconciliation can tell every
e-mail the service sent once, twice or never."""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict
from email.parser import BytesHeaderParser
from email.policy import default as default_policy

from aiosmtpd.smtp import SMTP as SMTPProtocol
from aiosmtpd.smtp import Envelope, Session

from bench.smtp_sink import PASSWORD, USER, Certificates, sink_controller

__all__ = ["PASSWORD", "USER", "MailSink"]

# aiosmtpd warns on every AUTH about an attribute it deprecated itself.
logging.getLogger("mail.log").setLevel(logging.ERROR)


class _Recorder:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.arrivals: dict[str, list[float]] = defaultdict(list)

    async def handle_DATA(self, server: SMTPProtocol, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or b""
        if isinstance(envelope.content, bytes):
            raw = envelope.content
        headers = BytesHeaderParser(policy=default_policy).parsebytes(raw)
        subject = str(headers.get("subject", ""))
        with self.lock:
            self.arrivals[subject].append(time.time())
        return "250 2.0.0 OK"


class MailSink:
    """Runs in a thread of the soak's process (aiosmtpd's Controller), on the load core."""

    def __init__(self, certs: Certificates, port: int) -> None:
        self._recorder = _Recorder()
        self.host, self.port = "localhost", port
        self._controller = sink_controller(self._recorder, certs, port)

    def arrivals(self) -> dict[str, list[float]]:
        """Subject -> arrival times (epoch seconds), one per message received."""
        with self._recorder.lock:
            return {subject: list(times) for subject, times in self._recorder.arrivals.items()}

    def start(self) -> None:
        self._controller.start()

    def stop(self) -> None:
        self._controller.stop()
