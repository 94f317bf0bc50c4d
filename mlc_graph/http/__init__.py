"""The HTTP surface: the GraphQL view, GraphiQL, compression, other routes and the server."""
