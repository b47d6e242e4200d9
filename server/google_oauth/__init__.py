"""The Google OAuth core shared by the Google connections (Calendar, Gmail)."""

from server.google_oauth.errors import (
    MESSAGES,
    BadGoogleState,
    ConsentFailed,
    GooglePlatformNotConfigured,
)
from server.google_oauth.flow import (
    Authorization,
    Consent,
    ConsentRequest,
    GoogleApp,
    client,
    finish,
    frontend_url,
    google_app,
    revoke_quietly,
    secure_cookies,
    start,
)

__all__ = [
    "MESSAGES",
    "Authorization",
    "BadGoogleState",
    "Consent",
    "ConsentFailed",
    "ConsentRequest",
    "GoogleApp",
    "GooglePlatformNotConfigured",
    "client",
    "finish",
    "frontend_url",
    "google_app",
    "revoke_quietly",
    "secure_cookies",
    "start",
]
