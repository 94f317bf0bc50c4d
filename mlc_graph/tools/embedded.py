"""An embedded PostgreSQL for laptops without one, through the pgserver package (data under .mlc/).

pgserver ships PostgreSQL binaries in its wheel and listens on a Unix socket inside the data
directory only, so it never clashes with a server already on port 5432. PostgreSQL refuses to run as
root: when we are root, pgserver creates a system user `pgserver`, hands it the data directory and
makes the directories above it traversable (g+rx, o+rx), then runs initdb and postgres as that user.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DEFAULT_DATA_DIR = Path(".mlc") / "pgdata"
# While `make run` serves the embedded database its URL is here, so the command line can use it:
#   export DATABASE_URL="$(cat .mlc/database-url)"
URL_FILE_NAME = "database-url"


class EmbeddedUnavailableError(RuntimeError):
    """pgserver is not installed (the `embedded` extra) or could not start PostgreSQL."""


@dataclass(slots=True)
class EmbeddedPostgres:
    """A running embedded server; `stop()` shuts it down (it also stops when the process exits)."""

    data_dir: Path
    url: str
    _server: Any

    @property
    def url_file(self) -> Path:
        return self.data_dir.parent / URL_FILE_NAME

    def publish_url(self) -> Path:
        """Write the URL beside the data directory for other commands (removed again by `stop`)."""
        self.url_file.write_text(self.url + "\n", encoding="utf-8")
        return self.url_file

    def stop(self) -> None:
        self.url_file.unlink(missing_ok=True)
        self._server.cleanup()


def _import_pgserver() -> Any:
    # pgserver computes its runtime directory at import and warns when XDG_RUNTIME_DIR is unset (a
    # normal state in containers and CI); the fallback it picks is fine, so the warning is noise.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            import pgserver
        except ImportError as exc:
            raise EmbeddedUnavailableError(
                "embedded PostgreSQL needs the pgserver package: pip install -e '.[embedded]', "
                "or set DATABASE_URL to a running server"
            ) from exc
    return pgserver


def start_embedded(data_dir: Path = DEFAULT_DATA_DIR, *, delete_on_stop: bool = False) -> EmbeddedPostgres:
    """Start (or reuse) the server whose data lives in `data_dir`; initialises the directory on first use."""
    pgserver = _import_pgserver()
    # pgserver logs every pg_ctl command line at INFO; the dev server's log should show our own lines.
    logging.getLogger("pgserver").setLevel(logging.WARNING)
    data_dir = data_dir.expanduser().resolve()
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    try:
        server = pgserver.get_server(data_dir, cleanup_mode="delete" if delete_on_stop else "stop")
    except Exception as exc:  # pgserver raises bare subprocess/OS errors; the log is in data_dir/log
        raise EmbeddedUnavailableError(
            f"embedded PostgreSQL did not start ({exc}); see {data_dir / 'log'}"
        ) from exc
    return EmbeddedPostgres(data_dir=data_dir, url=server.get_uri(), _server=server)
