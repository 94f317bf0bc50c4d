"""Plain SQL migrations, applied in file-name order by `mlc-graph migrate`."""
