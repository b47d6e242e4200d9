"""Secrets at rest, OAuth state and log redaction."""

from server.security.cipher import DecryptionError, Keyring, SecretContext
from server.security.oauth_state import InvalidOAuthState, OAuthState, issue_state, open_state
from server.security.redaction import RedactingFilter, redact

__all__ = [
    "DecryptionError",
    "InvalidOAuthState",
    "Keyring",
    "OAuthState",
    "RedactingFilter",
    "SecretContext",
    "issue_state",
    "open_state",
    "redact",
]
