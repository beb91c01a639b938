"""`make lab` runs `python -m course_lib lab`: it starts JupyterLab on the course, which opens."""

from __future__ import annotations

import json
import re
import secrets

import pytest
import requests

from course_lib.__main__ import ROOT, lab_command
from course_lib.servers import serve_script

TOKEN = secrets.token_hex(16)


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """JupyterLab started exactly as `make lab` does, headless on a free port, with an empty workspace."""
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
    with serve_script(command, cwd=ROOT, ready_path="/api/status", timeout=90) as server:
        yield server


def test_lab_command_serves_the_course_folder_on_loopback():
    command = lab_command([])
    assert f"--ServerApp.root_dir={ROOT}" in command
    assert "--ServerApp.ip=127.0.0.1" in command


def test_lab_page_opens(lab):
    response = requests.get(f"{lab.url}/lab", params={"token": TOKEN}, timeout=30)
    assert response.status_code == 200
    assert "JupyterLab" in response.text


def test_notebooks_are_listed_by_the_contents_api(lab):
    response = requests.get(f"{lab.url}/api/contents/notebooks", params={"token": TOKEN}, timeout=30)
    assert response.status_code == 200
    names = {item["name"] for item in response.json()["content"] if item["type"] == "notebook"}
    assert "00_setup.ipynb" in names
    assert names == {p.name for p in (ROOT / "notebooks").glob("*.ipynb")}


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
