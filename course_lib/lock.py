"""The lock file: exact versions the notebooks were validated with, and how this environment differs from them."""

from __future__ import annotations

import importlib.metadata
import re
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
LOCK_FILE = ROOT / "requirements-lock.txt"
PYPROJECT = ROOT / "pyproject.toml"
FIX_COMMAND = ".venv/bin/python -m pip install --require-hashes -r requirements-lock.txt"
_PIN = re.compile(
    r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)==(?P<version>[^\s;\\]+)\s*(?:;\s*(?P<marker>[^\\]+?))?\s*\\?$"
)


@dataclass(frozen=True)
class Pin:
    """One locked package: its exact version and the environments it applies to."""

    name: str
    version: str
    marker: str | None = None

    def applies(self) -> bool:
        """Whether this environment (platform, Python version) installs the package."""
        return self.marker is None or Marker(self.marker).evaluate()


def read_lock(path: Path = LOCK_FILE) -> list[Pin]:
    """The pins of a uv / pip-tools requirements lock (a package can have one pin per Python version range)."""
    matches = map(_PIN.match, path.read_text(encoding="utf-8").splitlines())
    return [Pin(canonicalize_name(m["name"]), m["version"], m["marker"]) for m in matches if m]


def direct_dependencies(path: Path = PYPROJECT, extras: tuple[str, ...] = ("dev",)) -> dict[str, Requirement]:
    """The dependencies pyproject.toml names (and those of the given extras), by canonical name."""
    project = tomllib.loads(path.read_text(encoding="utf-8"))["project"]
    lines = [*project["dependencies"], *(line for extra in extras for line in project["optional-dependencies"][extra])]
    return {canonicalize_name(req.name): req for req in map(Requirement, lines)}


def locked_direct_dependencies(path: Path = LOCK_FILE) -> set[str]:
    """The packages the lock says it holds because pyproject.toml asks for them (`# via course-lib`)."""
    names, current = set(), None
    for line in path.read_text(encoding="utf-8").splitlines():
        match = _PIN.match(line)
        if match:
            current = canonicalize_name(match["name"])
        elif current and re.match(r"^\s+#\s+(via\s+)?course-lib\b", line):
            names.add(current)
    return names


def lock_mismatches(lock: Path = LOCK_FILE, pyproject: Path = PYPROJECT) -> list[str]:
    """Where the lock and pyproject.toml disagree: a dependency missing from one, or a pin outside its range."""
    pins, wanted = read_lock(lock), direct_dependencies(pyproject)
    problems = [f"{name}: in pyproject.toml, not in the lock" for name in sorted(set(wanted) - {p.name for p in pins})]
    problems += [
        f"{name}: locked for course-lib, not in pyproject.toml"
        for name in sorted(locked_direct_dependencies(lock) - set(wanted))
    ]
    problems += [
        f"{pin.name}: locked {pin.version}, pyproject.toml asks {wanted[pin.name].specifier}"
        for pin in pins
        if pin.name in wanted and not wanted[pin.name].specifier.contains(pin.version, prereleases=True)
    ]
    return problems


def installed_versions(names: Iterable[str]) -> dict[str, str]:
    """The installed version of each named distribution; names that are not installed are left out."""
    versions = {}
    for name in names:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            pass
    return versions


def installed_differences(lock: Path = LOCK_FILE) -> list[str]:
    """The packages of this environment whose installed version is not the locked one (or that are missing)."""
    pins = [pin for pin in read_lock(lock) if pin.applies()]
    installed = installed_versions(pin.name for pin in pins)
    return [
        f"{pin.name}: not installed (locked {pin.version})"
        if pin.name not in installed
        else f"{pin.name}: installed {installed[pin.name]}, locked {pin.version}"
        for pin in pins
        if installed.get(pin.name) != pin.version
    ]
