"""Keeps secrets out of logs: a logging filter that masks tokens, keys and passwords."""

from __future__ import annotations

import logging
import re

_MASK = "[redacted]"
# key=value / "key": "value" pairs whose key names a secret.
_PAIR = re.compile(
    r"""(?ix)
    (["']?(?:[a-z_]*?(?P<key>token|secret|password|passwd|api[_-]?key|hmac[_-]?key|authorization|
    client_secret|app_secret|code_verifier))["']?\s*[:=]\s*)
    (?P<value>"[^"]*"|'[^']*'|bearer\s+[^\s,;"']+|[^\s,;&"'}]+)
    """
)
# After "token:" in prose comes a word ("page_token: not a token this API issued", "invalid
# token: Signature ..."), not a credential: an unquoted token value is masked only when it
# looks like one (long, with a digit or a symbol no English word has).
_CREDENTIAL_LIKE = re.compile(r"(?=.*[0-9\-_./+=~])[^\s]{8,}")
# OAuth values in URLs (a provider's redirect or token endpoint in an error or debug line).
_QUERY_SECRET = re.compile(
    r"(?i)([?&](?:code|access_token|refresh_token|client_secret|fb_exchange_token|input_token"
    r"|id_token|code_verifier)=)[^&\s\"'#]+"
)
_BEARER = re.compile(r"(?i)\bbearer\s+[A-Za-z0-9\-._~+/]+=*")
_JWT = re.compile(r"\beyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*")
_STORED = re.compile(r"\bv1:[A-Za-z0-9_-]+:[A-Za-z0-9_-]{20,}")
# Meta long-lived tokens start with EAA; Google access tokens with ya29.
_PROVIDER_TOKEN = re.compile(
    r"\b(?:EAA[A-Za-z0-9]{20,}|ya29\.[A-Za-z0-9_\-.]{10,}|1//[A-Za-z0-9_\-]{10,})"
)


def _mask_pair(match: re.Match[str]) -> str:
    value = match.group("value")
    quoted = value[:1] in "\"'" or value.lower().startswith("bearer")
    word = not quoted and not _CREDENTIAL_LIKE.fullmatch(value)
    if match.group("key").lower() == "token" and word:
        return match.group(0)
    return match.group(1) + _MASK


def redact(text: str) -> str:
    text = _QUERY_SECRET.sub(lambda m: m.group(1) + _MASK, text)
    text = _PAIR.sub(_mask_pair, text)
    for pattern in (_BEARER, _JWT, _STORED, _PROVIDER_TOKEN):
        text = pattern.sub(_MASK, text)
    return text


class RedactingFilter(logging.Filter):
    """Rewrites each record's final message; attach it to every handler."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        if record.exc_info and not record.exc_text:
            # Formatters reuse a cached exc_text, so filling it here redacts tracebacks too.
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        return True


def install(level: str = "INFO") -> None:
    """Configures root logging with redaction on every handler."""
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter())
