"""Meta's normalisation and hashing rules, against known vectors (SHA-256 of the normalised
UTF-8 string, computed independently of the module)."""

from __future__ import annotations

import pytest

from server.providers.meta_user_data import (
    ContactInfo,
    audience_row,
    hash_value,
    normalize_phone,
    user_data,
)

# The contact every end-to-end test uses: input -> the hash Meta must receive.
KNOWN = {
    "em": (
        " Joao.Silva@Example.COM ",
        "f2880341b1a692cbd1d3619956fc8e1207cf5a7c80cdf67c2f44c615a77df5e7",
    ),
    "ph": (
        "+55 (11) 98765-4321",
        "029c7290f14c4516673508635f0519db95f7daf42057fd0e4ad1de84c5408a66",
    ),
    "fn": ("João", "d147147c3dcbe0ac2756b42297dd7f013f8b2fa6178e209c3f74dc7d752243ef"),
    "ct": ("São Paulo", "3eda1428ae1aece064071f8d40f08fe2bc59ffa66c171a163caf15122ec4d7f0"),
    "st": ("SP", "be18b85f77fc024db379acf19e8a1ce62307ab7bb1bca395389ecfc2dafaf741"),
    "zp": ("01310-100", "9a4a139dfbfcd2fc89a3cb4302dad65a35abd8d29a56c09a962b69c5cf3bca40"),
    "country": ("BR", "885036a0da3dff3c3e05bc79bf49382b12bc5098514ed57ce0875aba1aa2c40d"),
}


@pytest.mark.parametrize("key", sorted(KNOWN))
def test_known_vectors(key: str) -> None:
    raw, expected = KNOWN[key]
    assert hash_value(key, raw) == expected


@pytest.mark.parametrize(
    ("raw", "digits"),
    [
        ("+55 (11) 98765-4321", "5511987654321"),
        ("(11) 98765-4321", "5511987654321"),  # national: Brazil by default
        ("0055 11 98765-4321", "5511987654321"),  # international prefix written out
        ("011 98765-4321", "5511987654321"),  # trunk zero
        ("+1 (650) 555-1234", "16505551234"),
        ("tel: 5511987654321", "5511987654321"),
    ],
)
def test_phone_digits_with_country_code(raw: str, digits: str) -> None:
    assert normalize_phone(raw) == digits


def test_names_keep_utf8_and_drop_punctuation() -> None:
    # "d'ávila-souza" -> "dávilasouza", hashed as UTF-8; NFD input hashes like NFC.
    expected = "d1eec6b62db1978b733e89a7690848cfcdf8bbb2d8befdbabba3f97ca4198ad6"
    assert hash_value("ln", "D'Ávila-Souza") == expected
    assert hash_value("ln", "D'A\u0301vila-Souza") == expected


def test_never_hashes_twice_or_plain_keys_and_omits_empty() -> None:
    already = KNOWN["em"][1]
    out = user_data(
        ContactInfo(
            email=already,
            phone="  ",
            first_name="",
            lead_id="1234567890123456789",
            client_ip_address="203.0.113.7",
            client_user_agent="Mozilla/5.0",
            fbc="fb.1.1554763741205.AbCdEfGhIjKlMnOpQrStUvWxYz1234567890",
            fbp="fb.1.1558571054389.1098115397",
        )
    )
    assert out == {
        "em": already,
        "lead_id": "1234567890123456789",
        "client_ip_address": "203.0.113.7",
        "client_user_agent": "Mozilla/5.0",
        "fbc": "fb.1.1554763741205.AbCdEfGhIjKlMnOpQrStUvWxYz1234567890",
        "fbp": "fb.1.1558571054389.1098115397",
    }


def test_audience_row_uses_the_same_hashes() -> None:
    row = audience_row(ContactInfo(email=KNOWN["em"][0], phone=KNOWN["ph"][0]))
    assert row[:2] == [KNOWN["em"][1], KNOWN["ph"][1]]
    assert set(row[2:]) == {""}
