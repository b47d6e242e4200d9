"""Settings of the provider sandbox: one frozen dataclass per fake, grouped in one root."""

from __future__ import annotations

import os
from dataclasses import dataclass, field


@dataclass(frozen=True)
class WahaSettings:
    """How the WAHA fake behaves.

    Attributes:
        api_key: the plain key clients must send in `X-Api-Key`.
        engine: engine name echoed in `SessionInfo.engine` and every webhook envelope.
        tier: `CORE` or `PLUS`, echoed in the envelope's `environment`.
        version: WAHA version echoed in `environment` and the `User-Agent` of webhooks.
        start_delay_seconds: STARTING lasts this long before SCAN_QR_CODE / WORKING.
        qr_rotation_seconds: while SCAN_QR_CODE, the QR value changes this often.
        status_wait_seconds: endpoints that need a status (QR, sendText) wait this long for it
            before answering 422, as WAHA's `waitUntilStatus` does (10 s there).
        webhook_timeout_seconds: per-attempt timeout of a webhook POST.
        webhook_retry_delay_scale: multiplies every retry delay; tests use a tiny value so a
            `delaySeconds: 2` policy plays out in milliseconds.
        default_phone: the phone number a scan links when the control call names none.
        default_push_name: the profile name a scan links when the control call names none.
    """

    api_key: str = "sandbox-waha-key"
    engine: str = "WEBJS"
    tier: str = "PLUS"
    version: str = "2026.7.1"
    start_delay_seconds: float = 0.2
    qr_rotation_seconds: float = 20.0
    status_wait_seconds: float = 10.0
    webhook_timeout_seconds: float = 10.0
    webhook_retry_delay_scale: float = 1.0
    default_phone: str = "5511999990000"
    default_push_name: str = "Sandbox Phone"


@dataclass(frozen=True)
class SandboxSettings:
    """Root settings: one field per provider fake, so adding a fake adds a field here."""

    waha: WahaSettings = field(default_factory=WahaSettings)

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> SandboxSettings:
        """Read overrides from the environment.

        The WAHA key defaults to `CONEXOES_WAHA_API_KEY` so a `make run` that points the server
        at the sandbox needs to set the key once.
        """
        env = dict(os.environ if environ is None else environ)
        defaults = WahaSettings()
        waha = WahaSettings(
            api_key=env.get(
                "SANDBOX_WAHA_API_KEY", env.get("CONEXOES_WAHA_API_KEY", defaults.api_key)
            ),
            qr_rotation_seconds=float(
                env.get("SANDBOX_WAHA_QR_ROTATION_SECONDS", defaults.qr_rotation_seconds)
            ),
            start_delay_seconds=float(
                env.get("SANDBOX_WAHA_START_DELAY_SECONDS", defaults.start_delay_seconds)
            ),
            webhook_retry_delay_scale=float(
                env.get("SANDBOX_WAHA_RETRY_DELAY_SCALE", defaults.webhook_retry_delay_scale)
            ),
        )
        return cls(waha=waha)
