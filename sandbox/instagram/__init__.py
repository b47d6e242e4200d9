"""The Instagram fake: Instagram Login, tokens, the messaging API and signed webhooks."""

from sandbox.instagram.app import InstagramFake, InstagramSettings, build_instagram_fake

__all__ = ["InstagramFake", "InstagramSettings", "build_instagram_fake"]
