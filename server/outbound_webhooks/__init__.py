"""Outbound webhooks (`webhook_saida`): a tenant's endpoints receive change-feed events,
signed, delivered as jobs with the spec's retry policy and dead-lettered like any job."""
