"""A CRM contact's data as Meta's user data (normalised and hashed by meta_user_data)."""

from __future__ import annotations

from db.models import Contact
from server.providers.meta_user_data import ContactInfo, user_data


def split_name(full: str | None) -> tuple[str, str]:
    """First word as first name, the last word as last name ("Joao da Silva" -> joao, silva)."""
    words = (full or "").split()
    if not words:
        return "", ""
    return words[0], words[-1] if len(words) > 1 else ""


def contact_info(contact: Contact, *, lead_id: str = "") -> ContactInfo:
    first, last = split_name(contact.nome)
    return ContactInfo(
        email=contact.email or "",
        phone=contact.telefone or "",
        first_name=first,
        last_name=last,
        city=contact.cidade or "",
        state=contact.estado or "",
        zip_code=contact.cep or "",
        country=contact.pais or "",
        external_id=str(contact.id),
        lead_id=lead_id,
    )


def contact_user_data(contact: Contact, *, lead_id: str = "") -> dict[str, str]:
    return user_data(contact_info(contact, lead_id=lead_id))
