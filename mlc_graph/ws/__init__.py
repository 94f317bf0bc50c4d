"""GraphQL over WebSocket: the subscription protocols."""
