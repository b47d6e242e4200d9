"""The facts recorded for each kind of change, built the same way by every room."""

from __future__ import annotations

import uuid
from typing import Any

from db.models import Contact, Opportunity


def _id(value: uuid.UUID | None) -> str | None:
    return str(value) if value else None


def contact_changed(
    contact: Contact | None,
    *,
    created: bool,
    origem: str,
    contato_id: uuid.UUID | None = None,
    nome: str | None = None,
    telefone: str | None = None,
    owner_id: uuid.UUID | None = None,
) -> dict[str, Any]:
    """CONTACT_CHANGED: from a loaded row, or from the values just written (`contato_id`...)."""
    if contact is not None:
        contato_id, nome, telefone = contact.id, contact.nome, contact.telefone
        owner_id = contact.owner_id
    return {
        "contato_id": _id(contato_id),
        "created": created,
        "origem": origem,
        "nome": nome,
        "email": contact.email if contact is not None else None,
        "telefone": telefone,
        "owner_id": _id(owner_id),
    }


def opportunity_created(opportunity: Opportunity) -> dict[str, Any]:
    """OPPORTUNITY_CREATED."""
    return {
        "oportunidade_id": _id(opportunity.id),
        "contato_id": _id(opportunity.contato_id),
        "funil_id": _id(opportunity.funil_id),
        "etapa_id": _id(opportunity.etapa_id),
        "owner_id": _id(opportunity.owner_id),
        "origem": opportunity.origem,
        "titulo": opportunity.titulo,
    }


def connection_changed(
    connection_type: str, connection_id: uuid.UUID, status: str, *, requires_reconnect: bool
) -> dict[str, Any]:
    """CONNECTION_CHANGED (the same facts server.resilience.alerts records on break/recovery)."""
    return {
        "connection_type": connection_type,
        "connection_id": str(connection_id),
        "status": status,
        "requires_reconnect": requires_reconnect,
    }
