"""Meta's customer-information rules: normalise, then SHA-256 (lowercase hex) each value.

One module for the Conversions API (`user_data`) and Custom Audiences (customer-file rows), so
a contact matches the same way in both. Meta's rules, as data:
https://developers.facebook.com/docs/marketing-api/conversions-api/parameters/customer-information-parameters
https://developers.facebook.com/docs/marketing-api/audiences/guides/custom-audiences#hash

- `em` trimmed and lowercased; `ph` digits with the country code (parsed with `phonenumbers`,
  Brazil by default), no `+`, no leading zeros; `fn`/`ln` lowercased without punctuation,
  accented letters kept as UTF-8; `ct` lowercased without spaces or punctuation; `st`, `zp`
  and `country` lowercased without spaces or punctuation; `external_id` trimmed.
- Never hashed: `lead_id`, the client's IP and user agent, `fbc`, `fbp`.
- Empty values are left out (Meta rejects empty strings); a value that already is a SHA-256
  hex digest is passed through, never hashed twice.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

import phonenumbers

DEFAULT_REGION = "BR"
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_DIGITS = re.compile(r"\D")


def _strip_punctuation(value: str) -> str:
    """Letters and digits only (any script): drops spaces, dots, dashes, apostrophes."""
    return "".join(ch for ch in value if unicodedata.category(ch)[0] in ("L", "N"))


def normalize_email(value: str) -> str:
    return value.strip().lower()


def normalize_phone(value: str, region: str = DEFAULT_REGION) -> str:
    """Digits with the country code: `+55 (11) 98765-4321` -> `5511987654321`.

    A number `phonenumbers` can read gets its country code from it (or from `region` when
    written nationally); otherwise the digits themselves, without leading zeros (`0055...`).
    """
    text = value.strip()
    digits = _DIGITS.sub("", text)
    if not digits:
        return ""
    if digits.startswith("00"):  # international call prefix written out: 0055... = +55...
        text = "+" + digits.lstrip("0")
    try:
        parsed = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException:
        parsed = None
    if parsed is not None and phonenumbers.is_possible_number(parsed):
        return f"{parsed.country_code}{parsed.national_number}"
    return digits.lstrip("0")


def normalize_name(value: str) -> str:
    return _strip_punctuation(unicodedata.normalize("NFC", value.strip().lower()))


def normalize_zip(value: str) -> str:
    return _strip_punctuation(value.strip().lower())


def normalize_external_id(value: str) -> str:
    return value.strip()


# Meta key -> how its value is normalised before hashing.
HASHED_KEYS: Mapping[str, Callable[[str], str]] = MappingProxyType(
    {
        "em": normalize_email,
        "ph": normalize_phone,
        "fn": normalize_name,
        "ln": normalize_name,
        "ct": normalize_name,
        "st": normalize_name,
        "zp": normalize_zip,
        "country": normalize_name,
        "external_id": normalize_external_id,
    }
)
# Sent as they are: Meta matches them unhashed.
PLAIN_KEYS: tuple[str, ...] = (
    "lead_id",
    "client_ip_address",
    "client_user_agent",
    "fbc",
    "fbp",
)


def sha256_hex(value: str) -> str:
    return hashlib.sha256(value.encode("utf-8")).hexdigest()


def is_hashed(value: str) -> bool:
    return bool(_SHA256.match(value))


def hash_value(key: str, value: str) -> str:
    """The hash Meta expects for `key`; "" when nothing is left after normalising.

    Raises:
        KeyError: `key` is not one of HASHED_KEYS (a programming error).
    """
    raw = value.strip()
    if is_hashed(raw):
        return raw
    normalized = HASHED_KEYS[key](raw)
    return sha256_hex(normalized) if normalized else ""


@dataclass(frozen=True)
class ContactInfo:
    """What the CRM knows of a person, in plain text (never stored or logged from here)."""

    email: str = ""
    phone: str = ""
    first_name: str = ""
    last_name: str = ""
    city: str = ""
    state: str = ""
    zip_code: str = ""
    country: str = ""
    external_id: str = ""
    lead_id: str = ""
    client_ip_address: str = ""
    client_user_agent: str = ""
    fbc: str = ""
    fbp: str = ""

    def raw(self) -> dict[str, str]:
        """Meta key -> plain value."""
        return {
            "em": self.email,
            "ph": self.phone,
            "fn": self.first_name,
            "ln": self.last_name,
            "ct": self.city,
            "st": self.state,
            "zp": self.zip_code,
            "country": self.country,
            "external_id": self.external_id,
            "lead_id": self.lead_id,
            "client_ip_address": self.client_ip_address,
            "client_user_agent": self.client_user_agent,
            "fbc": self.fbc,
            "fbp": self.fbp,
        }


def user_data(info: ContactInfo) -> dict[str, str]:
    """CAPI `user_data`: hashed keys hashed, plain keys as given, empty keys left out."""
    out: dict[str, str] = {}
    for key, value in info.raw().items():
        if not value or not value.strip():
            continue
        if key in HASHED_KEYS:
            hashed = hash_value(key, value)
            if hashed:
                out[key] = hashed
        else:
            out[key] = value.strip()
    return out


# Custom Audiences customer-file schema (multi-key upload) -> CAPI key of the same value.
AUDIENCE_SCHEMA: tuple[tuple[str, str], ...] = (
    ("EMAIL", "em"),
    ("PHONE", "ph"),
    ("FN", "fn"),
    ("LN", "ln"),
    ("CT", "ct"),
    ("ST", "st"),
    ("ZIP", "zp"),
    ("COUNTRY", "country"),
    ("EXTERN_ID", "external_id"),
)


def audience_row(info: ContactInfo) -> list[str]:
    """One customer-file row in AUDIENCE_SCHEMA's order ("" where the CRM has nothing)."""
    hashed = user_data(info)
    return [hashed.get(key, "") for _, key in AUDIENCE_SCHEMA]
