"""The spec's KPIs (uptime, reconnection time, webhook delivery rate, token refresh success,
error rate) and the connection status history they are read from."""
