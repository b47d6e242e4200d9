"""The Custom Audiences room: ad accounts, audiences at Meta and here, members added by
pipeline events and sync, removals.

What another room may use (declared in pyproject.toml's import-linter contract): the CRM
directory removes a deleted contact, or one whose consent was withdrawn, from every audience.
"""

from server.audiences.removal import remove_contact

__all__ = ["remove_contact"]
