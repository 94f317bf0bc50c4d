"""Running one operation: the admission pipeline, the typed context and the compiled executor."""
