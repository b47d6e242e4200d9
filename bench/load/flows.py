"""Sequential flow latencies (one at a time, so each sample is the flow's own time).

qr, ours:      StartWhatsAppSession -> GetWhatsAppQrCode until a PNG is in hand, per fresh user
qr, baseline:  the WAHA calls that path makes, made bare: GET session (404), POST /api/sessions,
               GET auth/qr as image and as raw value
oauth, ours:   GetMetaAuthUrl and the Facebook Login dialog (not timed), then the timed part:
               GET the sidecar's callback (state check, code exchange, long-lived token, /me,
               debug_token, pages and their webhook subscriptions, encrypted store) until its 302
oauth, base:   the Graph calls that callback makes, made bare, with a fresh code each time

Config: kind, side, samples, and per kind: grpc target + tokens (qr ours), waha_url + api_key
(qr baseline), grpc target + token + http (oauth ours), graph_url + app (oauth baseline).
"""

from __future__ import annotations

import base64
import time
import uuid
from typing import Any
from urllib.parse import parse_qs, urlsplit

import grpc
import httpx
from renove.conexoes.v1 import meta_leads_service_pb2 as mpb
from renove.conexoes.v1 import meta_leads_service_pb2_grpc as mpb_grpc
from renove.conexoes.v1 import whatsapp_service_pb2 as wpb
from renove.conexoes.v1 import whatsapp_service_pb2_grpc as wpb_grpc

from bench.load.common import channel, metadata, run
from bench.stats import latency_summary

PNG = b"\x89PNG\r\n\x1a\n"


async def _qr_ours(config: dict[str, Any]) -> float:
    async with channel(config["target"]) as ch:
        stub = wpb_grpc.WhatsAppServiceStub(ch)
        token = config["tokens"].pop()
        md = metadata(token)
        # The user is created on first sight: do that outside the timed part.
        await stub.GetWhatsAppStatus(wpb.GetWhatsAppStatusRequest(), metadata=md)
        started = time.perf_counter()
        await stub.StartWhatsAppSession(
            wpb.StartWhatsAppSessionRequest(request_id=str(uuid.uuid4())), metadata=md
        )
        while True:
            try:
                qr = await stub.GetWhatsAppQrCode(wpb.GetWhatsAppQrCodeRequest(), metadata=md)
                break
            except grpc.aio.AioRpcError as exc:
                if exc.code() != grpc.StatusCode.FAILED_PRECONDITION:
                    raise
        elapsed = time.perf_counter() - started
    if not base64.b64decode(qr.qr_code.split(",", 1)[1]).startswith(PNG):
        raise RuntimeError("the QR code is not a PNG")
    return elapsed


async def _qr_bare(config: dict[str, Any], http: httpx.AsyncClient) -> float:
    base, headers = config["waha_url"], {"X-Api-Key": config["api_key"]}
    name = f"bench-{uuid.uuid4().hex[:12]}"
    started = time.perf_counter()
    await http.get(f"{base}/api/sessions/{name}", headers=headers)
    created = await http.post(
        f"{base}/api/sessions",
        headers=headers,
        json={"name": name, "start": True, "config": {"metadata": {"bench": "1"}}},
    )
    created.raise_for_status()
    image = await http.get(
        f"{base}/api/{name}/auth/qr",
        params={"format": "image"},
        headers={**headers, "Accept": "application/json"},
    )
    image.raise_for_status()
    raw = await http.get(f"{base}/api/{name}/auth/qr", params={"format": "raw"}, headers=headers)
    raw.raise_for_status()
    elapsed = time.perf_counter() - started
    if not base64.b64decode(image.json()["data"]).startswith(PNG):
        raise RuntimeError("the sandbox QR is not a PNG")
    return elapsed


async def _oauth_ours(config: dict[str, Any], http: httpx.AsyncClient) -> float:
    async with channel(config["target"]) as ch:
        stub = mpb_grpc.MetaLeadsServiceStub(ch)
        call = stub.GetMetaAuthUrl(mpb.GetMetaAuthUrlRequest(), metadata=metadata(config["token"]))
        url = await call
        # The state is bound to the browser that got this cookie with the URL.
        cookie = next(str(v) for k, v in await call.initial_metadata() if k == "x-set-cookie")
    dialog = await http.get(url.oauth.auth_url)
    callback = dialog.headers["location"]
    started = time.perf_counter()
    landed = await http.get(callback, headers={"cookie": cookie.split(";", 1)[0]})
    elapsed = time.perf_counter() - started
    status = parse_qs(urlsplit(landed.headers.get("location", "")).query).get("status")
    if landed.status_code not in (302, 303, 307) or status != ["ok"]:
        raise RuntimeError(f"callback answered {landed.status_code} {landed.headers}")
    return elapsed


async def _oauth_bare(config: dict[str, Any], http: httpx.AsyncClient) -> float:
    graph, app = config["graph_url"], config["app"]
    version = config["version"]
    redirect = "http://bench.invalid/callback"
    dialog = await http.get(
        f"{graph}/{version}/dialog/oauth",
        params={"client_id": app["id"], "redirect_uri": redirect, "state": "bench",
                "scope": "leads_retrieval,pages_show_list,pages_manage_metadata"},
    )  # fmt: skip
    code = parse_qs(urlsplit(dialog.headers["location"]).query)["code"][0]
    started = time.perf_counter()
    api = f"{graph}/{version}"
    secret = {"client_id": app["id"], "client_secret": app["secret"]}
    short = await http.get(
        f"{api}/oauth/access_token", params={**secret, "redirect_uri": redirect, "code": code}
    )
    short.raise_for_status()
    long = await http.get(
        f"{api}/oauth/access_token",
        params={**secret, "grant_type": "fb_exchange_token",
                "fb_exchange_token": short.json()["access_token"]},
    )  # fmt: skip
    token = long.json()["access_token"]
    auth = {"Authorization": f"Bearer {token}"}
    await http.get(f"{api}/me", params={"fields": "id,name,email"}, headers=auth)
    await http.get(
        f"{api}/debug_token",
        params={"input_token": token},
        headers={"Authorization": f"Bearer {app['id']}|{app['secret']}"},
    )
    accounts = await http.get(
        f"{api}/me/accounts",
        params={"fields": "id,name,access_token,tasks,category", "limit": "100"},
        headers=auth,
    )
    for page in accounts.json().get("data", []):
        await http.post(
            f"{api}/{page['id']}/subscribed_apps",
            params={"subscribed_fields": "leadgen"},
            headers={"Authorization": f"Bearer {page['access_token']}"},
        )
    return time.perf_counter() - started


async def main(config: dict[str, Any]) -> dict[str, Any]:
    samples: list[float] = []
    async with httpx.AsyncClient(timeout=30) as http:
        for _ in range(int(config["samples"])):
            kind, side = config["kind"], config["side"]
            if kind == "qr":
                seconds = await (_qr_ours(config) if side == "ours" else _qr_bare(config, http))
            elif side == "ours":
                seconds = await _oauth_ours(config, http)
            else:
                seconds = await _oauth_bare(config, http)
            samples.append(seconds * 1000)
    return latency_summary(samples) | {"samples_ms": [round(s, 2) for s in samples]}


if __name__ == "__main__":
    run(main)
