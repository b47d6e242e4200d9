"""The WAHA fake's in-memory world: sessions, their lifecycle, messages and contacts.

Everything runs on one event loop and no method awaits between reading and writing a session,
so handlers running concurrently see each change whole. Background tasks (boot, QR rotation,
webhook deliveries) are owned here and cancelled on reset/close.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from sandbox.settings import WahaSettings
from sandbox.waha import errors
from sandbox.waha.faults import FaultPlan
from sandbox.waha.models import (
    FAILED,
    JSON,
    SCAN_QR_CODE,
    STARTING,
    STOPPED,
    WORKING,
    Me,
    Message,
    Session,
    chat_id_for,
    new_pairing_code,
    new_qr_value,
    new_wa_message_key,
    normalize_config,
    session_status_payload,
)
from sandbox.waha.webhooks import WebhookDispatcher

_POLL_SECONDS = 0.02


@dataclass
class Contact:
    """What `check-exists` answers for a phone number."""

    exists: bool
    chat_id: str


@dataclass
class WahaState:
    """The fake's state and the operations that change it.

    Args:
        settings: the fake's behaviour knobs.
        dispatcher: where lifecycle and message events go out as webhooks.
        clock: seconds since the epoch (`time.time` in production).
    """

    settings: WahaSettings
    dispatcher: WebhookDispatcher
    clock: Callable[[], float]
    sessions: dict[str, Session] = field(default_factory=dict)
    messages: list[Message] = field(default_factory=list)
    # Our sent messages by (session, chat, message id): a repeated pre-generated id finds its own.
    _sent_by_key: dict[tuple[str, str, str], Message] = field(default_factory=dict)
    # Media files of received messages: (session, file name) -> (mimetype, bytes).
    files: dict[tuple[str, str], tuple[str, bytes]] = field(default_factory=dict)
    # sendSeen calls (session, chatId, messageIds), for the control endpoint.
    seen: list[dict[str, object]] = field(default_factory=list)
    contacts: dict[str, Contact] = field(default_factory=dict)
    faults: FaultPlan = field(default_factory=FaultPlan)

    # -- lookups ---------------------------------------------------------------------------

    def now_ms(self) -> int:
        return int(self.clock() * 1000)

    def get(self, name: str) -> Session:
        session = self.sessions.get(name)
        if session is None:
            raise errors.session_not_found()
        return session

    async def wait_status(self, name: str, expected: list[str]) -> Session:
        """WAHA's `waitUntilStatus`: poll for a while, then 422 with the current status."""
        session = self.sessions.get(name)
        if session is None:
            raise errors.session_param_not_found(name)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.settings.status_wait_seconds
        while session.status not in expected and loop.time() < deadline:
            await asyncio.sleep(_POLL_SECONDS)
            if self.sessions.get(name) is not session:
                raise errors.session_param_not_found(name)
        if session.status not in expected:
            raise errors.status_not_expected(name, session.status, expected)
        return session

    # -- sessions API ----------------------------------------------------------------------

    def create(self, name: str, config: JSON | None, start: bool) -> Session:
        if name in self.sessions:
            raise errors.nest_error(422, f"Session '{name}' already exists. Use PUT to update it.")
        session = Session(name=name, config=normalize_config(config))
        self.sessions[name] = session
        if start:
            self._launch(session)
        return session

    def update(self, name: str, config: JSON | None) -> Session:
        session = self.get(name)
        was_running = session.running
        self._halt(session, silent=True)
        session.config = normalize_config(config)
        if was_running:
            self._launch(session)
        return session

    def start(self, name: str) -> Session:
        session = self.get(name)
        if not session.running:
            self._launch(session)
        return session

    def stop(self, name: str) -> Session:
        session = self.get(name)
        if session.running:
            self._halt(session, silent=False)
        return session

    def restart(self, name: str) -> Session:
        session = self.get(name)
        self._halt(session, silent=True)
        self._launch(session)
        return session

    def logout(self, name: str) -> Session:
        session = self.get(name)
        was_running = session.running
        self._halt(session, silent=True)
        session.account = None
        session.auth_broken = False
        if was_running:
            self._launch(session)  # a fresh start with no auth: a new QR
        return session

    def delete(self, name: str) -> None:
        """Stop, logout and forget the session; unknown names are fine (idempotent)."""
        session = self.sessions.pop(name, None)
        if session is not None:
            self._halt(session, silent=True)

    def request_code(self, session: Session, phone_number: str) -> str:
        session.pairing_code = new_pairing_code()
        return session.pairing_code

    def check_exists(self, phone: str) -> Contact:
        digits = "".join(ch for ch in phone if ch.isdigit())
        return self.contacts.get(digits, Contact(exists=True, chat_id=f"{digits}@c.us"))

    def send_text(
        self, session: Session, chat_id: str, text: str, reply_to: str | None, key: str | None
    ) -> Message:
        # WhatsApp knows a message by its chat, sender and id: a send that comes again with a
        # pre-generated id already sent is that same message, not a second one.
        earlier = self._sent_by_key.get((session.name, chat_id, key)) if key else None
        if earlier is not None:
            earlier.repeats += 1
            return earlier
        message = self._new_message(
            session, chat_id, from_me=True, source="api", body=text, key=key, reply_to=reply_to
        )
        self._sent_by_key[(session.name, chat_id, message.key)] = message
        self.dispatcher.emit(session, "message.any", message.to_json())
        return message

    # -- the phone's side (control API) ------------------------------------------------------

    def scan(
        self,
        name: str,
        phone: str | None,
        push_name: str | None,
        value: str | None,
        code: str | None,
        via_starting: bool,
    ) -> Session:
        """Link a phone: the QR (or pairing code) was accepted; the session becomes WORKING."""
        session = self.get(name)
        if session.status != SCAN_QR_CODE:
            raise errors.nest_error(409, f"Session '{name}' is {session.status}, not SCAN_QR_CODE")
        if value is not None and value != session.qr_value:
            raise errors.nest_error(409, "QR code expired: that value is no longer current")
        if code is not None and code != session.pairing_code:
            raise errors.nest_error(409, "Pairing code does not match")
        digits = "".join(ch for ch in (phone or self.settings.default_phone) if ch.isdigit())
        name_shown = push_name or self.settings.default_push_name
        session.account = Me(id=f"{digits}@c.us", push_name=name_shown)
        self._cancel_lifecycle(session)
        session.qr_value = None
        session.pairing_code = None
        if via_starting:
            self._set_status(session, STARTING)
        self._set_status(session, WORKING)
        return session

    def rotate_qr(self, name: str) -> Session:
        """Rotate the QR now and restart the rotation timer."""
        session = self.get(name)
        if session.status != SCAN_QR_CODE:
            raise errors.nest_error(409, f"Session '{name}' is {session.status}, not SCAN_QR_CODE")
        self._cancel_lifecycle(session)
        self._new_qr(session)
        session.lifecycle_task = self._spawn(self._rotate_forever(session))
        return session

    def receive(
        self,
        name: str,
        sender: str,
        body: str,
        push_name: str | None,
        key: str | None,
        sender_pn: str | None = None,
        media: tuple[str, str, bytes] | None = None,
        base_url: str = "",
    ) -> Message:
        """A contact sent a message to the linked phone: `message` and `message.any`.
        `sender` may be a hidden id (`...@lid`); `sender_pn` the phone WhatsApp reveals."""
        session = self._working(name)
        message = self._new_message(
            session,
            chat_id_for(sender),
            from_me=False,
            source="app",
            body=body,
            key=key,
            push_name=push_name,
        )
        if sender_pn:
            message.sender_pn = f"{''.join(c for c in sender_pn if c.isdigit())}@s.whatsapp.net"
        if media is not None:
            mimetype, filename, content = media
            stored = f"{message.key}.{filename.rsplit('.', 1)[-1] if '.' in filename else 'bin'}"
            self.files[(session.name, stored)] = (mimetype, content)
            message.media = {
                "url": f"{base_url}/api/files/{session.name}/{stored}",
                "mimetype": mimetype,
                "filename": filename,
                "error": None,
            }
            message.media_size = len(content)
        payload = message.to_json()
        self.dispatcher.emit(session, "message", payload)
        self.dispatcher.emit(session, "message.any", payload)
        return message

    def phone_send(self, name: str, to: str, body: str, key: str | None) -> Message:
        """The owner typed on the phone: only `message.any` (fromMe, source `app`)."""
        session = self._working(name)
        message = self._new_message(
            session, chat_id_for(to), from_me=True, source="app", body=body, key=key
        )
        self.dispatcher.emit(session, "message.any", message.to_json())
        return message

    def ack(self, name: str, message_id: str, ack: int) -> Message:
        """Report a delivery/read level; any value, in any order, as the network may."""
        session = self.get(name)
        for message in self.messages:
            if message.session == name and message.id == message_id:
                message.ack = ack
                self.dispatcher.emit(session, "message.ack", message.ack_json())
                return message
        raise errors.nest_error(404, f"Message '{message_id}' not found")

    def unlink_from_phone(self, name: str) -> Session:
        """The person logged the device out on the phone: the auth is gone and WAHA restarts
        the session straight into a new QR round (no FAILED in between)."""
        session = self._working(name)
        self._cancel_lifecycle(session)
        session.account = None
        self._new_qr(session)
        session.lifecycle_task = self._spawn(self._rotate_forever(session))
        return session

    def drop(self, name: str, status: str, auth: str) -> Session:
        """The connection broke. `auth`: keep (restart recovers), lost (restart → new QR),
        broken (restart → FAILED again until logout)."""
        session = self.get(name)
        self._cancel_lifecycle(session)
        session.qr_value = None
        if auth == "lost":
            session.account = None
        elif auth == "broken":
            session.auth_broken = True
        self._set_status(session, status)
        return session

    # -- housekeeping ------------------------------------------------------------------------

    async def reset(self) -> None:
        for session in self.sessions.values():
            self._cancel_lifecycle(session)
        self.sessions.clear()
        self.messages.clear()
        self._sent_by_key.clear()
        self.seen.clear()
        self.files.clear()
        self.contacts.clear()
        self.faults.reset()
        await self.dispatcher.reset()

    async def aclose(self) -> None:
        tasks = [s.lifecycle_task for s in self.sessions.values() if s.lifecycle_task]
        for session in self.sessions.values():
            self._cancel_lifecycle(session)
        await asyncio.gather(*tasks, return_exceptions=True)
        await self.dispatcher.aclose()

    # -- lifecycle internals -----------------------------------------------------------------

    def _working(self, name: str) -> Session:
        session = self.get(name)
        if session.status != WORKING:
            raise errors.nest_error(409, f"Session '{name}' is {session.status}, not WORKING")
        return session

    def _set_status(self, session: Session, status: str, emit: bool = True) -> None:
        session.status = status
        session.statuses.append((status, self.now_ms()))
        del session.statuses[:-3]
        if emit:
            self.dispatcher.emit(session, "session.status", session_status_payload(session))

    def _launch(self, session: Session) -> None:
        self._cancel_lifecycle(session)
        self._set_status(session, STARTING)
        session.lifecycle_task = self._spawn(self._boot(session))

    def _halt(self, session: Session, silent: bool) -> None:
        self._cancel_lifecycle(session)
        session.qr_value = None
        session.pairing_code = None
        if session.status != STOPPED:
            self._set_status(session, STOPPED, emit=not silent)

    def _new_qr(self, session: Session) -> None:
        session.qr_value = new_qr_value()
        session.qr_rotations += 1
        # Real WAHA re-emits SCAN_QR_CODE on every rotation so clients refetch the QR.
        self._set_status(session, SCAN_QR_CODE)

    async def _boot(self, session: Session) -> None:
        await asyncio.sleep(self.settings.start_delay_seconds)
        if session.auth_broken:
            self._set_status(session, FAILED)
        elif session.account is not None:
            self._set_status(session, WORKING)
        else:
            self._new_qr(session)
            await self._rotate_forever(session)

    async def _rotate_forever(self, session: Session) -> None:
        while session.status == SCAN_QR_CODE:
            await asyncio.sleep(self.settings.qr_rotation_seconds)
            if session.status == SCAN_QR_CODE:
                self._new_qr(session)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        return asyncio.get_running_loop().create_task(coro)

    def _cancel_lifecycle(self, session: Session) -> None:
        task = session.lifecycle_task
        session.lifecycle_task = None
        if task is not None and task is not asyncio.current_task():
            task.cancel()

    def _new_message(
        self,
        session: Session,
        chat_id: str,
        *,
        from_me: bool,
        source: str,
        body: str,
        key: str | None,
        reply_to: str | None = None,
        push_name: str | None = None,
    ) -> Message:
        me = session.account
        message = Message(
            session=session.name,
            key=key or new_wa_message_key(),
            chat_id=chat_id,
            from_me=from_me,
            source=source,
            body=body,
            timestamp=int(self.clock()),
            me_id=me.id if me else "",
            # Ours start PENDING and move forward with message.ack; received ones are delivered.
            ack=0 if from_me else 1,
            push_name=push_name,
            reply_to=reply_to,
        )
        self.messages.append(message)
        session.last_activity_ms = self.now_ms()
        return message
