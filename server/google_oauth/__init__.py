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
    start,
)
from server.google_oauth.tokens import (
    TESTING_KIND,
    google_token_kind,
    refresh_google,
    warn_testing_mode,
)
from server.oauth_views import secure_cookies

__all__ = [
    "MESSAGES",
    "TESTING_KIND",
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
    "google_token_kind",
    "refresh_google",
    "revoke_quietly",
    "secure_cookies",
    "start",
    "warn_testing_mode",
]
