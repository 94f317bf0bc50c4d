"""Install GraphiQL's browser assets from the npm registry (build time; `make assets`).

`npm pack` fetches the pinned packages' tarballs (npm verifies their integrity against the registry), and
the few browser files GraphiQL needs are copied into mlc_graph/http/static/graphiql/ with a manifest. Nothing
is committed (the directory is git-ignored) and nothing is fetched at run time: school networks block
CDNs, laptops go offline.

Why these versions: graphiql 4 is the last major with a self-contained UMD build (graphiql 5 ships ES
modules with Monaco web workers, which needs a bundler); that build runs on React 18's UMD builds
(React 19 has none).

Usage: python -m mlc_graph.http.assets [--force] [--dest DIR]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Sequence
from pathlib import Path

import orjson

from mlc_graph.http.graphiql import ASSET_DIR

PACKAGES = {"graphiql": "4.1.2", "react": "18.3.1", "react-dom": "18.3.1"}
# destination file -> (package, path inside the package tarball)
FILES = {
    "graphiql.min.js": ("graphiql", "package/dist/index.umd.js"),
    "graphiql.min.css": ("graphiql", "package/dist/style.css"),
    "react.production.min.js": ("react", "package/umd/react.production.min.js"),
    "react-dom.production.min.js": ("react-dom", "package/umd/react-dom.production.min.js"),
    "LICENSE.graphiql": ("graphiql", "package/LICENSE"),
    "LICENSE.react": ("react", "package/LICENSE"),
    "LICENSE.react-dom": ("react-dom", "package/LICENSE"),
}
MANIFEST = "manifest.json"


class AssetError(RuntimeError):
    """npm is missing or failed, or a package lacks a file we need."""


def installed(dest: Path) -> bool:
    """True when `dest` holds every file of the pinned versions."""
    manifest = dest / MANIFEST
    if not manifest.is_file():
        return False
    try:
        recorded = orjson.loads(manifest.read_bytes()).get("packages", {})
    except orjson.JSONDecodeError:
        return False
    return recorded == PACKAGES and all((dest / name).is_file() for name in FILES)


def _pack(workdir: Path) -> dict[str, dict[str, str]]:
    npm = shutil.which("npm")
    if npm is None:
        raise AssetError("npm is not installed; GraphiQL's assets come from the npm registry")
    specs = [f"{name}@{version}" for name, version in PACKAGES.items()]
    completed = subprocess.run(  # noqa: S603 - npm from PATH, pinned specs, no shell
        [npm, "pack", "--json", "--silent", "--pack-destination", str(workdir), *specs],
        cwd=workdir,
        capture_output=True,
        check=False,
    )
    if completed.returncode != 0:
        raise AssetError(f"npm pack failed: {completed.stderr.decode(errors='replace').strip()}")
    packed: dict[str, dict[str, str]] = {}
    for entry in orjson.loads(completed.stdout):
        packed[entry["name"]] = {
            "version": entry["version"],
            "filename": entry["filename"],
            "integrity": entry.get("integrity", ""),
        }
    return packed


def install(dest: Path = ASSET_DIR, force: bool = False) -> bool:
    """Install the assets into `dest`; False when they were already there."""
    if not force and installed(dest):
        return False
    with tempfile.TemporaryDirectory(prefix="mlc-assets-") as tmp:
        workdir = Path(tmp)
        packed = _pack(workdir)
        staging = workdir / "out"
        staging.mkdir()
        for target, (package, member) in FILES.items():
            if package not in packed:
                raise AssetError(f"npm did not return {package}")
            with tarfile.open(workdir / packed[package]["filename"]) as archive:
                try:
                    source = archive.extractfile(member)
                except KeyError as exc:
                    raise AssetError(f"{package} has no {member}") from exc
                if source is None:
                    raise AssetError(f"{package}: {member} is not a file")
                # Only named members are read, never extracted by their own paths (no traversal).
                (staging / target).write_bytes(source.read())
        manifest = {"packages": PACKAGES, "resolved": packed}
        (staging / MANIFEST).write_bytes(orjson.dumps(manifest, option=orjson.OPT_INDENT_2))
        if dest.exists():
            shutil.rmtree(dest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copytree(staging, dest)
    return True


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m mlc_graph.http.assets", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--force", action="store_true", help="reinstall even when present")
    parser.add_argument(
        "--dest", type=Path, default=ASSET_DIR, help=f"target directory (default {ASSET_DIR})"
    )
    args = parser.parse_args(argv)
    try:
        done = install(args.dest, force=args.force)
    except AssetError as exc:
        print(f"assets: {exc}", file=sys.stderr)
        return 1
    versions = ", ".join(f"{name} {version}" for name, version in PACKAGES.items())
    print(f"GraphiQL assets {'installed' if done else 'already present'} in {args.dest} ({versions})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
