"""`make lab` runs `python -m course_lib lab`: it fills the learner's workspace and starts JupyterLab there."""

from __future__ import annotations

import json
import re
import secrets

import nbformat
import pytest
import requests
from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

from course_lib.__main__ import ROOT, lab_command
from course_lib.servers import serve_script
from course_lib.workspace import WORKSPACE_ENV

TOKEN = secrets.token_hex(16)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """The learner's workspace for these tests (COURSE_WORKSPACE): never the real work/ of whoever runs the tests."""
    return tmp_path_factory.mktemp("work")


@pytest.fixture(scope="module")
def lab(tmp_path_factory, workspace):
    """JupyterLab started exactly as `make lab` does, headless on a free port, with an empty browser workspace."""
    workspaces = tmp_path_factory.mktemp("workspaces")  # not the tabs a person left open in ~/.jupyter
    command = [
        "python",
        "-m",
        "course_lib",
        "lab",
        "--no-browser",
        "--ServerApp.port={port}",
        f"--IdentityProvider.token={TOKEN}",
        f"--LabApp.workspaces_dir={workspaces}",
    ]
    env = {WORKSPACE_ENV: str(workspace)}
    with serve_script(command, cwd=ROOT, env=env, ready_path="/api/status", timeout=90) as server:
        yield server


def test_lab_command_serves_the_workspace_on_loopback(tmp_path):
    command = lab_command([], tmp_path)
    assert f"--ServerApp.root_dir={tmp_path}" in command
    assert "--ServerApp.ip=127.0.0.1" in command


def test_lab_page_opens(lab):
    response = requests.get(f"{lab.url}/lab", params={"token": TOKEN}, timeout=30)
    assert response.status_code == 200
    assert "JupyterLab" in response.text


@pytest.mark.parametrize("folder", ["notebooks", "exercises", "solutions"])
def test_the_workspace_copies_are_what_jupyterlab_shows(lab, workspace, folder):
    response = requests.get(f"{lab.url}/api/contents/{folder}", params={"token": TOKEN}, timeout=30)
    assert response.status_code == 200
    names = {item["name"] for item in response.json()["content"] if item["type"] == "notebook"}
    assert "00_setup.ipynb" in names
    assert names == {p.name for p in (ROOT / folder).glob("*.ipynb")}
    assert (workspace / folder / "00_setup.ipynb").read_bytes() == (ROOT / folder / "00_setup.ipynb").read_bytes()


def test_lab_does_not_ask_learners_about_jupyter_news(lab):
    """The announcements plugin (news feed opt-in popup, update check) is disabled in the page config."""
    page = requests.get(f"{lab.url}/lab", params={"token": TOKEN}, timeout=30).text
    data = re.search(r'<script id="jupyter-config-data" type="application/json">(.*?)</script>', page, re.S)[1]
    config = json.loads(data)
    assert "@jupyterlab/apputils-extension:announcements" in config["disabledExtensions"]


def test_lab_refuses_requests_without_the_token(lab):
    assert requests.get(f"{lab.url}/api/contents/notebooks", timeout=30).status_code == 403


@pytest.mark.browser
def test_lab_opens_notebook_00_in_a_real_browser(lab, page):
    page.goto(f"{lab.url}/lab/tree/notebooks/00_setup.ipynb?token={TOKEN}", timeout=60_000)
    page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=60_000)
    # Only the notebook this URL opened: a workspace may restore other notebooks in background tabs.
    heading = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-MarkdownOutput h1").first
    assert heading.inner_text(timeout=30_000).startswith("00 環境構築")
    assert page.get_by_text("official Jupyter news").count() == 0


def answer(notebook_path, function: str, code: str) -> None:
    """Replace the placeholder of the exercise cell that defines `function` with the given body."""
    notebook = nbformat.read(notebook_path, as_version=4)
    [cell] = [c for c in notebook.cells if c.cell_type == "code" and f"def {function}(" in c.source]
    cell.source = cell.source.replace("# YOUR CODE HERE\n    raise NotImplementedError()", code)
    nbformat.write(notebook, notebook_path)


@pytest.mark.browser
def test_a_learner_runs_the_checks_of_a_workspace_notebook_in_the_browser(lab, workspace, page):
    """The learner's flow: answers in work/exercises/00, Run All Cells in JupyterLab, ✅ and ❌ on the page."""
    notebook = workspace / "exercises" / "00_setup.ipynb"
    answer(notebook, "is_healthy", "return True  # every server looks healthy: wrong")
    answer(
        notebook,
        "create_add_app",
        'app = FastAPI()\n\n    @app.get("/add")\n    def add(a: float, b: float) -> dict:\n'
        '        return {"sum": a + b}\n\n    return app',
    )
    # reset: only this notebook, not the tabs an earlier test left in JupyterLab's saved layout
    page.goto(f"{lab.url}/lab/tree/exercises/00_setup.ipynb?reset&token={TOKEN}", timeout=60_000)
    page.wait_for_selector(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Cell", timeout=60_000)
    # JupyterLab may ask which kernel to start (it did under pytest, not in a script): the notebook's own, Python 3
    select = page.locator(".jp-Dialog").get_by_role("button", name="Select")
    try:
        select.click(timeout=15_000)
    except PlaywrightTimeoutError:
        pass
    page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
    page.locator(".lm-Menu-itemLabel", has_text="Run All Cells").first.click()
    outputs = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-OutputArea-output")
    # attached, not visible: JupyterLab does not render cells scrolled out of view (content-visibility)
    outputs.filter(has_text="— このノートブックの進み具合").wait_for(state="attached", timeout=180_000)
    text = outputs.all_inner_texts()
    assert any(t.startswith("✅ 演習 2: FastAPI の /add: 合格") for t in text), text
    assert any(t.startswith("❌ 演習 3: ヘルスチェック関数: 不合格") for t in text), text
    assert any(t.startswith("⏳ 演習 1: Flask の /echo") for t in text), text
    assert "— このノートブックの進み具合: 1/3 件合格" in "\n".join(text)
