"""The bottom of the stack: settings, the error tree, the database and replicas, Redis, migrations, auth."""
