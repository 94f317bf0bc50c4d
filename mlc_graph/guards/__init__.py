"""What may refuse an operation before it runs: limits, persisted documents, cost, quotas, sessions."""
