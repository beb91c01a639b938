"""`python -m course_lib grade SUBMISSIONS`: run every learner's notebooks and write a CSV and an HTML report.

SUBMISSIONS holds one folder per learner with that learner's notebooks (named as the course's exercises). Each
notebook runs on a temporary copy in a fresh kernel (course_lib.exercises.running); the originals are only read.
"""

from __future__ import annotations

import csv
import html
import json
import statistics
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from course_lib.exercises.checking import SYMBOLS, first_line
from course_lib.exercises.running import PROBLEMS, NotebookRun, run_many

NOT_SUBMITTED = "not submitted"


@dataclass
class Grades:
    """Every learner's runs, by learner and notebook name, and the exercises in column order."""

    runs: dict[str, dict[str, NotebookRun]]
    columns: list[tuple[str, str]]  # (notebook, exercise title)

    def cell(self, learner: str, notebook: str, title: str) -> tuple[str, str]:
        """(status, message) of one learner's exercise; status 'not submitted' when the notebook is absent."""
        run = self.runs[learner].get(notebook)
        if run is None:
            return NOT_SUBMITTED, ""
        result = run.outcome(title)
        return result.status, result.message


def grade(submissions: Path, timeout: float, jobs: int | None = None) -> Grades:
    """Run each learner's notebooks (several at once) and collect the results."""
    learners = sorted(p for p in submissions.iterdir() if p.is_dir() and not p.name.startswith("."))
    work = [(learner.name, path) for learner in learners for path in sorted(learner.glob("*.ipynb"))]
    done = run_many([path for _, path in work], timeout, jobs)
    runs: dict[str, dict[str, NotebookRun]] = {learner.name: {} for learner in learners}
    for (learner, path), run in zip(work, done, strict=True):
        runs[learner][path.name] = run
    columns: list[tuple[str, str]] = []
    for notebook in sorted({name for by_name in runs.values() for name in by_name}):
        for by_name in runs.values():
            if notebook in by_name:
                for result in by_name[notebook].outcomes():
                    if (notebook, result.title) not in columns:
                        columns.append((notebook, result.title))
    return Grades(runs, columns)


def write_reports(grades: Grades, out: Path) -> list[Path]:
    """Write grades.csv (learner × exercise), details.csv (one row per learner, exercise), report.html, runs.json."""
    out.mkdir(parents=True, exist_ok=True)
    wide, long, page, raw = (out / n for n in ("grades.csv", "details.csv", "report.html", "runs.json"))
    with open(wide, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["learner", *(f"{nb} | {title}" for nb, title in grades.columns), "passed", "total"])
        for learner in grades.runs:
            statuses = [grades.cell(learner, nb, title)[0] for nb, title in grades.columns]
            writer.writerow([learner, *statuses, statuses.count("pass"), len(statuses)])
    with open(long, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["learner", "notebook", "exercise", "status", "message", "notebook_status", "seconds"])
        for learner, by_name in grades.runs.items():
            for nb, title in grades.columns:
                status, message = grades.cell(learner, nb, title)
                run = by_name.get(nb)
                run_status, seconds = (run.status, run.seconds) if run else (NOT_SUBMITTED, "")
                writer.writerow([learner, nb, title, status, first_line(message, 300), run_status, seconds])
    page.write_text(html_report(grades), encoding="utf-8")
    runs = {learner: [run.to_json() for run in by_name.values()] for learner, by_name in grades.runs.items()}
    raw.write_text(json.dumps(runs, ensure_ascii=False, indent=1), encoding="utf-8")
    return [wide, long, page, raw]


STYLE = """body{font-family:system-ui,sans-serif;margin:2em;max-width:70em}table{border-collapse:collapse;margin:1em 0}
td,th{border:1px solid #ccc;padding:.3em .6em;text-align:left;vertical-align:top}th{background:#f3f3f3}
.bar{background:#4a8;height:.8em;display:inline-block}.num{text-align:right}"""


def _table(head: list[str], rows: list[list[str]]) -> str:
    """An HTML table; cells are already escaped."""
    cells = "".join(f"<tr>{''.join(f'<td>{c}</td>' for c in row)}</tr>" for row in rows)
    return f"<table><tr>{''.join(f'<th>{h}</th>' for h in head)}</tr>{cells}</table>"


def html_report(grades: Grades, most_common: int = 3) -> str:
    """A self-contained HTML page (no script, no external file): pass rates, common mistakes, problems, times."""
    e = html.escape
    learners = list(grades.runs)
    rate_rows, mistake_rows = [], []
    for nb, title in grades.columns:
        cells = [grades.cell(learner, nb, title) for learner in learners]
        submitted = [c for c in cells if c[0] != NOT_SUBMITTED]
        passes = sum(c[0] == "pass" for c in submitted)
        share = passes / len(submitted) if submitted else 0.0
        counts = " ".join(f"{SYMBOLS[s]} {sum(c[0] == s for c in submitted)}" for s in SYMBOLS)
        bar = f'<span class="bar" style="width:{share * 10:.1f}em"></span>'
        rate_rows.append([e(nb), e(title), f"{bar} {passes}/{len(submitted)} ({share:.0%})", counts])
        mistakes = Counter(first_line(m, 160) for s, m in submitted if s == "fail")
        for message, n in mistakes.most_common(most_common):
            mistake_rows.append([e(nb), e(title), str(n), e(message)])
    problem_rows, time_rows = [], []
    for learner, by_name in grades.runs.items():
        for run in by_name.values():
            if run.status != "ok" or run.leftovers:
                what = PROBLEMS.get(run.status, "")
                left = f"（残ったプロセス {run.leftovers} 個を停止）" if run.leftovers else ""
                problem_rows.append([e(learner), e(run.notebook), e(f"{what} {run.detail}{left}".strip())])
    for nb in sorted({run.notebook for by_name in grades.runs.values() for run in by_name.values()}):
        times = [by_name[nb].seconds for by_name in grades.runs.values() if nb in by_name]
        time_rows.append([e(nb), str(len(times)), f"{statistics.median(times):.1f}", f"{max(times):.1f}"])
    matrix = [
        [e(learner)] + [SYMBOLS.get(grades.cell(learner, nb, t)[0], "—") for nb, t in grades.columns]
        for learner in learners
    ]
    parts = [
        f"<h1>採点レポート</h1><p>受講者 {len(learners)} 人、演習 {len(grades.columns)} 問。"
        "✅ 合格 ❌ 不合格 ⏳ 未実装 ⬜ 実行されなかった — 未提出</p>",
        "<h2>演習ごとの合格率</h2>" + _table(["ノートブック", "演習", "合格", "内訳"], rate_rows),
        "<h2>よくある不合格の理由</h2>"
        + (
            _table(["ノートブック", "演習", "人数", "チェックのメッセージ"], mistake_rows)
            if mistake_rows
            else "<p>なし</p>"
        ),
        "<h2>実行の問題</h2>"
        + (_table(["受講者", "ノートブック", "何が起きたか"], problem_rows) if problem_rows else "<p>なし</p>"),
        "<h2>ノートブックごとの実行時間（秒）</h2>" + _table(["ノートブック", "件数", "中央値", "最大"], time_rows),
        "<h2>受講者 × 演習</h2>" + _table(["受講者", *(e(f"{nb} / {t}") for nb, t in grades.columns)], matrix),
    ]
    return (
        '<!doctype html><html lang="ja"><head><meta charset="utf-8"><title>採点レポート</title>'
        f"<style>{STYLE}</style></head><body>{''.join(parts)}</body></html>\n"
    )
