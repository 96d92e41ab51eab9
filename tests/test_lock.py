"""Supply chain: every dependency is locked at an exact version with hashes, and what is installed is what is locked.

The install itself is tested by `.ci/run`, which installs into a fresh venv with `pip install --require-hashes`."""

import re
import tomllib
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def locked() -> dict[str, tuple[str, int]]:
    text = (ROOT / "requirements.lock").read_text()
    entries = {}
    for block in re.split(r"\n(?=[A-Za-z0-9])", text):
        m = re.match(r"([A-Za-z0-9._-]+)==([^\s\\;]+)", block)
        if m:
            entries[normal(m.group(1))] = (m.group(2), block.count("--hash=sha256:"))
    return entries


def normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_every_lock_entry_is_pinned_with_hashes():
    entries = locked()
    assert len(entries) > 50
    lines = [l for l in (ROOT / "requirements.lock").read_text().splitlines() if re.match(r"[A-Za-z0-9]", l)]
    assert all("==" in l for l in lines), [l for l in lines if "==" not in l]
    assert all(hashes >= 1 for _, hashes in entries.values()), [n for n, (_, h) in entries.items() if not h]


def test_runtime_and_test_dependencies_are_locked_at_their_pins():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    entries = locked()
    for requirement in project["dependencies"] + project["optional-dependencies"]["test"]:
        name = normal(re.split(r"[<>=!~\[ ;]", requirement, maxsplit=1)[0])
        assert name in entries, requirement
        pinned = re.search(r"==([^\s,;]+)", requirement)
        if pinned:
            assert entries[name][0] == pinned.group(1), requirement
    assert entries["litellm"][0] not in {"1.82.7", "1.82.8", "1.107.0"}  # compromised, withdrawn releases


def locked_extras() -> dict[tuple[str, frozenset[str]], str]:
    text = (ROOT / "requirements.lock").read_text()
    found = re.findall(r"^([A-Za-z0-9._-]+)\[([^\]]+)\]==([^\s\\;]+)", text, re.M)
    return {(normal(name), frozenset(e.strip() for e in extras.split(","))): pinned for name, extras, pinned in found}


def test_every_extra_an_installed_package_asks_for_is_pinned_too():
    """pip 23.2 in hash mode resolves `httpx[http2]` to the newest release on the index unless the lock pins the
    extra itself: a new upstream release then breaks a fresh install (it did, with httpx 0.29.0)."""
    from importlib.metadata import distributions

    from packaging.requirements import Requirement

    entries, extras = locked(), locked_extras()
    missing = []
    for dist in distributions():
        for text in dist.requires or []:
            requirement = Requirement(text)
            if not requirement.extras or (requirement.marker and not requirement.marker.evaluate({"extra": ""})):
                continue
            name = normal(requirement.name)
            if name not in entries:
                continue
            key = (name, frozenset(requirement.extras))
            if extras.get(key) != entries[name][0]:
                missing.append(f"{requirement.name}[{','.join(sorted(requirement.extras))}]=={entries[name][0]}"
                               f" (asked for by {dist.metadata['Name']})")
    assert not missing, missing


def test_installed_versions_match_the_lock():
    mismatched = []
    for name, (wanted, _) in locked().items():
        try:
            have = version(name)
        except PackageNotFoundError:
            have = "nothing"  # the lock holds no platform-specific entries: everything in it is installed
        if have != wanted:
            mismatched.append(f"{name}: {have} installed, {wanted} locked")
    assert not mismatched, mismatched
