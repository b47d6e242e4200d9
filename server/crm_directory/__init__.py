"""The CRM directory: the core's users, pipelines, custom fields and contacts, mirrored here
keyed by the core's ids and ordered by the core's updated_at.

What other rooms use: the contact mirror (PublishPipelineEvent upserts the contact it
carries), Lead Ads' distribution pool and the custom fields a mapping may target.
"""

from server.crm_directory.contacts import (
    ContactValues,
    ContactWrite,
    delete_contact,
    upsert_contact,
)
from server.crm_directory.fields import custom_targets
from server.crm_directory.users import distribution_pool

__all__ = [
    "ContactValues",
    "ContactWrite",
    "custom_targets",
    "delete_contact",
    "distribution_pool",
    "upsert_contact",
]
