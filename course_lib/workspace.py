"""The learner's workspace: copies of the lessons, exercises and solutions that nothing in the course overwrites.

`make lab` calls `sync_workspace()`: a notebook the workspace lacks is copied in; a copy the learner never changed
follows the course when the course changes (its bytes are the course's own, so nothing of the learner's is lost);
a copy the learner changed is never written again, and a changed course version goes beside it as
`NAME.updated-<hash>.ipynb`. `.course-sync.json` in the workspace remembers which course version each copy was.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WORKSPACE_ENV = "COURSE_WORKSPACE"
FOLDERS = ("notebooks", "exercises", "solutions")
STATE_FILE = ".course-sync.json"
PATTERN = "[0-9][0-9]_*.ipynb"


def workspace_dir() -> Path:
    """The workspace folder: $COURSE_WORKSPACE, else `work/` in the course (git-ignored)."""
    return Path(os.environ.get(WORKSPACE_ENV) or ROOT / "work").resolve()


def digest(path: Path) -> str:
    """sha256 of a file's bytes."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def course_notebooks(course: Path = ROOT) -> list[str]:
    """The course's notebooks as paths relative to the course folder: lessons, exercises, solutions."""
    return [f"{folder}/{p.name}" for folder in FOLDERS for p in sorted((course / folder).glob(PATTERN))]


def is_learner_copy(path: Path) -> bool:
    """A workspace notebook of the learner's own (not a course version placed beside it)."""
    return path.match(PATTERN) and "." not in path.name.removesuffix(".ipynb")


def beside_name(path: Path, sha: str, kind: str = "updated") -> Path:
    """Where a course version (or a rescued answer) goes next to the learner's copy: NAME.<kind>-<hash>.ipynb."""
    return path.with_name(f"{path.name.removesuffix('.ipynb')}.{kind}-{sha[:8]}.ipynb")


@dataclass
class SyncReport:
    """What a sync did, as paths relative to the workspace."""

    workspace: Path
    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    beside: list[tuple[str, str]] = field(default_factory=list)  # (the learner's copy, the new course version)

    def lines(self) -> list[str]:
        """The report in Japanese, one line per event; nothing when nothing happened."""
        out = [f"作業フォルダー {self.workspace} に追加: {name}" for name in self.added]
        out += [f"コースの更新を反映（まだ編集していない写し）: {name}" for name in self.updated]
        out += [
            f"コースの更新があります: {mine} はあなたの版のまま残し、新しい版を {new} に置きました"
            "（必要な部分を自分の版へ写してください）"
            for mine, new in self.beside
        ]
        return out


def _state(workspace: Path) -> dict[str, str]:
    path = workspace / STATE_FILE
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def _save_state(workspace: Path, state: dict[str, str]) -> None:
    tmp = workspace / (STATE_FILE + ".tmp")
    tmp.write_text(json.dumps(state, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    tmp.replace(workspace / STATE_FILE)


def _place(source: Path, target: Path) -> None:
    """Copy source to a target that does not exist yet (never replacing a file that appeared meanwhile)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(source, "rb") as src, open(target, "xb") as dst:
        shutil.copyfileobj(src, dst)


def sync_workspace(course: Path = ROOT, workspace: Path | None = None) -> SyncReport:
    """Bring the course's notebooks into the workspace without ever overwriting a file the learner changed."""
    workspace = workspace_dir() if workspace is None else workspace
    workspace.mkdir(parents=True, exist_ok=True)
    state, report = _state(workspace), SyncReport(workspace)
    for relative in course_notebooks(course):
        source, target = course / relative, workspace / relative
        new = digest(source)
        if not target.exists():
            _place(source, target)
            report.added.append(relative)
        elif (mine := digest(target)) == new or state.get(relative) == new:
            pass  # the same bytes, or the learner's changes on top of the current course version
        elif state.get(relative) == mine:
            _place(source, tmp := target.with_name(target.name + ".sync-tmp"))
            tmp.replace(target)  # the copy is byte for byte the course's previous version: nothing of theirs
            report.updated.append(relative)
        else:
            new_version = beside_name(target, new)
            if not new_version.exists():
                _place(source, new_version)
            report.beside.append((relative, str(new_version.relative_to(workspace))))
            continue  # the learner's copy still descends from the version recorded before
        state[relative] = new
    _save_state(workspace, state)
    return report


def learner_changed(path: Path, course: Path = ROOT) -> bool:
    """Whether a course file differs from its committed version (without git, or untracked: assume it does)."""
    try:
        relative = path.resolve().relative_to(course.resolve()).as_posix()
        committed = subprocess.run(
            ["git", "-C", str(course), "show", f"HEAD:{relative}"], capture_output=True, check=True, timeout=30
        ).stdout
    except (ValueError, OSError, subprocess.SubprocessError):
        return True
    return committed != path.read_bytes()


def rescue(path: Path, folder: str, workspace: Path | None = None) -> Path:
    """Copy a learner's edited course notebook into the workspace before the course rewrites it; return where."""
    workspace = workspace_dir() if workspace is None else workspace
    target = workspace / folder / path.name
    if target.exists():
        target = beside_name(target, digest(path), kind="rescued")
        if target.exists():
            return target  # the same bytes were rescued before
    _place(path, target)
    return target
