"""The `return_to` of an OAuth auth-url request: where on our frontend the browser lands.

Validated when the URL is made (INVALID_ARGUMENT on `return_to`), never truncated or replaced
later: the callback appends `?conexao=...&status=...&motivo=...` to it, so a `?` or `#` of its
own would break that outcome query, and anything but a path on our frontend would be an open
redirect.
"""

from __future__ import annotations

import re

from server.errors import InvalidArgument

MAX_RETURN_TO = 512
# A path: printable ASCII without whitespace, backslash, `?` or `#`.
_PATH = re.compile(r"/[!-~]*")
_FORBIDDEN = set("\\?#")


def validated_return_to(value: str, default: str) -> str:
    """`value` when it is a same-origin path fit for the outcome query; `default` when empty.

    Raises:
        InvalidArgument: with a `return_to` field violation otherwise.
    """
    if not value:
        return default
    if len(value) > MAX_RETURN_TO:
        raise InvalidArgument.field("return_to", f"longer than {MAX_RETURN_TO} characters")
    if not _PATH.fullmatch(value) or value.startswith("//"):
        raise InvalidArgument.field("return_to", "must be a path on the frontend, like /a/b")
    if _FORBIDDEN & set(value):
        raise InvalidArgument.field("return_to", "must not hold '?', '#' or '\\\\'")
    return value
