"""The CRM directory: the core's users, pipelines, custom fields and contacts, mirrored here
keyed by the core's ids and ordered by the core's updated_at."""
