"""Request log, metrics and tracing."""
