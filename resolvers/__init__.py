"""The GraphQL layer: Strawberry types and root resolvers, one module per domain."""
