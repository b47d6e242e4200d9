"""Row 5: the latency of two user-facing flows against the sandbox, one flow at a time.

- QR code: StartWhatsAppSession -> GetWhatsAppQrCode with the PNG in hand, a fresh user each
  time. Baseline: the same WAHA calls made bare against the same sandbox.
- OAuth callback: the sidecar's GET /api/v1/conexoes/meta/callback from the code to the 302
  (state check, code exchange, long-lived token, /me, debug_token, page subscriptions,
  encrypted store). Baseline: the same Graph calls made bare.

The ratio is therefore what our path adds on top of the provider round trips it must make.
"""

from __future__ import annotations

import uuid
from typing import Any

from bench.report import Figure
from bench.scenarios.context import Context
from bench.stats import median_of
from server.auth.caller import Role

ROW_QR = "5a. QR code (start -> PNG)"
ROW_OAUTH = "5b. OAuth callback (code -> 302)"


async def run(ctx: Context) -> None:
    stack, profile = ctx.stack, ctx.profile
    env = stack.server_env
    timeout = 120.0
    qr_ours, qr_bare, oauth_ours, oauth_bare = [], [], [], []
    app = {"id": env["CONEXOES_META_APP_ID"], "secret": env["CONEXOES_META_APP_SECRET"]}

    async def flow(kind: str, side: str, samples: int, **extra: object) -> dict[str, Any]:
        config = {"kind": kind, "side": side, "samples": samples, **extra}
        return await ctx.load("bench.load.flows", config, timeout)

    for _ in range(profile.runs):
        tokens = [stack.token(Role.MEMBER, uuid.uuid4()) for _ in range(profile.qr_samples)]
        qr_ours.append(
            await flow("qr", "ours", profile.qr_samples, target=stack.grpc_addr, tokens=tokens)
        )
        qr_bare.append(
            await flow("qr", "baseline", profile.qr_samples, waha_url=ctx.waha_url,
                       api_key=env["CONEXOES_WAHA_API_KEY"])
        )  # fmt: skip
        oauth_ours.append(
            await flow("oauth", "ours", profile.oauth_samples, target=stack.grpc_addr,
                       token=stack.token(Role.ADMIN))
        )  # fmt: skip
        oauth_bare.append(
            await flow("oauth", "baseline", profile.oauth_samples, graph_url=ctx.graph_url,
                       version=env.get("CONEXOES_META_GRAPH_VERSION", "v21.0"), app=app)
        )  # fmt: skip
    ctx.report.raw["qr"] = {"ours": qr_ours, "baseline": qr_bare}
    ctx.report.raw["oauth"] = {"ours": oauth_ours, "baseline": oauth_bare}
    for row, ours, bare, label, samples in (
        (ROW_QR, qr_ours, qr_bare, "the same WAHA calls, bare", profile.qr_samples),
        (ROW_OAUTH, oauth_ours, oauth_bare, "the same Graph calls, bare", profile.oauth_samples),
    ):
        note = f"{samples} sequential samples per run"
        for key, name in (("p50_ms", "p50 (ms)"), ("p99_ms", "p99 (ms)")):
            ctx.report.add(Figure(row, name, median_of(ours, key), median_of(bare, key),
                                  "lower", len(ours), label, note))  # fmt: skip
