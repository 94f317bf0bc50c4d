"""MLC Graph: the GraphQL API server of the MLC music-education platform."""
