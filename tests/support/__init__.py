"""What the tests share: databases, HTTP servers, factories, clusters and Redis servers."""
