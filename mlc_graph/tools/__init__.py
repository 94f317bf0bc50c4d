"""Command-line tools and the development server: seed, loadtest, roster import, embedded PostgreSQL."""
