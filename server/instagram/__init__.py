"""Instagram Direct: Instagram Login, DMs in and out within the messaging window, token refresh."""
