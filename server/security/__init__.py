"""Secrets at rest, OAuth state and log redaction."""

from server.security.browser_binding import BrowserBinding, check_binding, new_binding
from server.security.cipher import DecryptionError, Keyring, SecretContext
from server.security.oauth_state import InvalidOAuthState, OAuthState, issue_state, open_state
from server.security.redaction import RedactingFilter, redact

__all__ = [
    "BrowserBinding",
    "DecryptionError",
    "InvalidOAuthState",
    "Keyring",
    "OAuthState",
    "RedactingFilter",
    "SecretContext",
    "check_binding",
    "issue_state",
    "new_binding",
    "open_state",
    "redact",
]
