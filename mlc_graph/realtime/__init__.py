"""Live leaderboards, their fan-out over Redis pub/sub, and the per-process real-time services."""
