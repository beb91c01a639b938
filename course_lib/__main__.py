"""Command line: `python -m course_lib doctor | exercises [--check] | lab [jupyter args…] | progress [FOLDER] [--json]
| grade SUBMISSIONS [--out DIR] |
download-weights [--url URL] | serve image-api [--port N] [--host 127.0.0.1] [--model auto|imagenet|digits]
[--backend torch|onnx|onnx-int8] [--max-batch N] [--max-wait-ms MS] [--max-queue N] [--workers N]`."""

from __future__ import annotations

import argparse
import functools
import math
import os
import sys
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# The serve flags' choices and defaults, as course_lib.vision.backends.BACKENDS (+ "auto") and image_api's create_app
# have them
# (tests/test_cli.py checks): named here so that building the parser does not import torch.
BACKEND_NAMES = ["torch", "onnx", "onnx-int8", "auto"]
DEFAULT_MAX_WAIT_MS, DEFAULT_MAX_QUEUE = 5.0, 64
# A Jupyter config folder searched before the user's: it turns off JupyterLab's news and update check (the
# announcements plugin), which asks every new learner to opt in to a feed an offline classroom cannot fetch.
LAB_CONFIG = Path(__file__).resolve().parent / "jupyter_config"


def lab_command(extra: list[str], workspace: Path) -> list[str]:
    """The JupyterLab command line that `make lab` runs: the learner's workspace, 127.0.0.1, lesson 00 first."""
    return [
        sys.executable,
        "-m",
        "jupyter",
        "lab",
        f"--ServerApp.root_dir={workspace}",
        "--ServerApp.ip=127.0.0.1",
        "--LabApp.default_url=/lab/tree/notebooks/00_setup.ipynb",
        *(["--allow-root"] if hasattr(os, "geteuid") and os.geteuid() == 0 else []),  # containers run as root
        *extra,
    ]


def lab_environment(environ: dict[str, str] | None = None) -> dict[str, str]:
    """The environment `make lab` starts JupyterLab with: the course's Jupyter config folder searched first."""
    env = dict(os.environ if environ is None else environ)
    env["JUPYTER_CONFIG_PATH"] = os.pathsep.join(filter(None, [str(LAB_CONFIG), env.get("JUPYTER_CONFIG_PATH")]))
    return env


def _exercises(args: argparse.Namespace) -> int:
    from course_lib.exercises import build_exercises, stale_exercises

    if args.check:
        stale = stale_exercises()
        for name in stale:
            print(f"out of date: exercises/{name} (run `make exercises`)")
        return 1 if stale else 0
    changed, rescued = build_exercises()
    lines = [f"\n  {'wrote' if p.exists() else 'deleted (no solution)'} {p.relative_to(ROOT)}" for p in changed]
    lines += [f"\n  your edited copy was kept first: {p}" for p in rescued]
    print(f"{len(changed)} exercise notebook(s) changed" + "".join(lines))
    return 0


def _doctor(args: argparse.Namespace) -> int:
    from course_lib.doctor import doctor

    doctor()
    return 0


def _lab(args: argparse.Namespace) -> int:
    from course_lib.workspace import sync_workspace, workspace_dir

    workspace = workspace_dir()
    for line in sync_workspace(ROOT, workspace).lines():
        print(line, flush=True)
    print(
        f"JupyterLab を作業フォルダー {workspace} で開きます（ここでの変更はコースの更新で上書きされません）",
        flush=True,
    )
    command = lab_command(args.jupyter_args, workspace)
    os.execve(command[0], command, lab_environment())
    return 0  # not reached


def _progress(args: argparse.Namespace) -> int:
    import json

    from course_lib.exercises.progress import format_progress, progress
    from course_lib.workspace import workspace_dir

    folder = Path(args.folder) if args.folder else workspace_dir() / "exercises"
    if not folder.is_dir():
        print(f"error: {folder} がありません。先に `make lab` で作業フォルダーを作ってください。", file=sys.stderr)
        return 2
    runs = progress(folder, args.timeout, args.jobs)
    print(json.dumps([r.to_json() for r in runs], ensure_ascii=False, indent=1) if args.json else format_progress(runs))
    return 0


def _grade(args: argparse.Namespace) -> int:
    from course_lib.exercises.grading import grade, write_reports

    submissions = Path(args.submissions)
    if not submissions.is_dir():
        print(f"error: {submissions} is not a folder (expected one folder per learner)", file=sys.stderr)
        return 2
    out = Path(args.out) if args.out else submissions.with_name(submissions.name + "-grades")
    grades = grade(submissions, args.timeout, args.jobs)
    for path in write_reports(grades, out):
        print(f"wrote {path}")
    return 0


def _download_weights(args: argparse.Namespace) -> int:
    from course_lib.vision import WeightsUnavailableError, download_weights

    try:
        path = download_weights(args.url)
    except WeightsUnavailableError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"ResNet-50 ImageNet weights ready: {path}")
    return 0


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from course_lib.apps import image_api
    from course_lib.vision import MODEL_ENV, WeightsUnavailableError, load_classifier
    from course_lib.vision.quantize import has_vnni

    try:
        classifier = load_classifier(args.model, download=False, verbose=True)  # never a 100 MB download on start
    except WeightsUnavailableError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    settings = {key: getattr(args, key) for key in image_api.ENVIRONMENT}
    batching = f"batches of up to {args.max_batch}" if args.max_batch > 1 else "no batching"
    workers = f"{args.workers} worker processes" if args.workers > 1 else "1 process"
    print(
        f"serving {args.app} ({classifier.name}, {args.backend}, {batching}, {workers}) "
        f"on http://{args.host}:{args.port}",
        flush=True,
    )
    if args.backend == "onnx-int8" and (note := int8_note(has_vnni())):
        print(note, flush=True)
    address = {"host": args.host, "port": args.port, "log_level": "info"}
    if args.workers == 1:
        app = image_api.create_app(classifier, **settings)
        _say_backend_choice(image_api.backend_of(app))
        uvicorn.run(app, **address)
        return 0
    if settings["backend"] == "auto":  # chosen once, here: every worker serves the same backend
        from course_lib.vision.auto_backend import auto_backend

        chosen = auto_backend(classifier)
        _say_backend_choice(chosen)
        settings["backend"] = chosen.name
    # Worker processes import the app by name and build it from the environment they inherit.
    os.environ.update({MODEL_ENV: classifier.name, **image_api.environment_for(**settings)})
    del classifier  # each worker loads its own
    uvicorn.run(image_api.FACTORY, factory=True, workers=args.workers, **address)
    return 0


def int8_note(vnni: bool | None) -> str | None:
    """What to tell someone who names int8 on a CPU not known to have VNNI, where int8 may not beat fp32."""
    if vnni:
        return None
    cpu = "reports no VNNI" if vnni is False else "does not say whether it has VNNI"
    return (
        f"note: this CPU {cpu}; int8 is often no faster than fp32 on such CPUs (notebook 06 section 4). "
        "Without --backend the server times the backends on this machine and picks the fastest (auto)."
    )


def _say_backend_choice(backend: object) -> None:
    """Print what --backend auto measured and chose (nothing for a named backend)."""
    choice = getattr(backend, "choice", None)
    if choice is not None:
        times = ", ".join(f"{name} {ms:.1f} ms" for name, ms in choice.p50_ms.items())
        print(f"backend auto → {choice.chosen}: {choice.reason} (median of one image: {times})", flush=True)
        for name, why in choice.excluded.items():
            print(f"backend auto: {name} not used: {why}", flush=True)


def bounded(kind: Callable[[str], int | float], low: float, high: float) -> Callable[[str], int | float]:
    """An argparse type: a number of this kind between low and high, or a clear error."""
    name = "an integer" if kind is int else "a number"

    def parse(text: str) -> int | float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {name}") from None
        if not (math.isfinite(value) and low <= value <= high):
            raise argparse.ArgumentTypeError(f"{text} is out of range: expected {name} from {low:g} to {high:g}")
        return value

    return parse


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with one sub-command per course task."""
    parser = argparse.ArgumentParser(prog="python -m course_lib", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("doctor", help="print the environment check").set_defaults(func=_doctor)
    ex = sub.add_parser("exercises", help="build exercises/ from solutions/")
    ex.add_argument("--check", action="store_true", help="only report exercises that are out of date")
    ex.set_defaults(func=_exercises)
    lab = sub.add_parser(
        "lab",
        help="copy new notebooks into the workspace (work/, or $COURSE_WORKSPACE) and start JupyterLab there "
        "(other options go to `jupyter lab`)",
    )
    lab.set_defaults(func=_lab, passthrough=True)
    pr = sub.add_parser("progress", help="run your exercise notebooks in fresh kernels and show each check's result")
    pr.add_argument("folder", nargs="?", help="folder of notebooks (default: the workspace's exercises/)")
    pr.add_argument("--json", action="store_true", help="print the results as JSON")
    _run_options(pr)
    pr.set_defaults(func=_progress)
    gr = sub.add_parser("grade", help="grade a class: SUBMISSIONS/<learner>/<notebook>.ipynb → CSV and HTML report")
    gr.add_argument("submissions", help="folder with one sub-folder of notebooks per learner")
    gr.add_argument("--out", help="where the reports go (default: SUBMISSIONS-grades next to it)")
    _run_options(gr)
    gr.set_defaults(func=_grade)
    dl = sub.add_parser(
        "download-weights", help="download the ResNet-50 ImageNet weights into the torch hub cache (needs internet)"
    )
    dl.add_argument(
        "--url",
        help="download from this copy instead of torchvision's URL (a name-<sha256 prefix>.pth "
        "name is checked as torch.hub does)",
    )
    dl.set_defaults(func=_download_weights)
    srv = sub.add_parser("serve", help="run a course app as a standalone server (Ctrl+C stops it)")
    srv.add_argument("app", choices=["image-api"], help="which app")
    srv.add_argument("--port", type=bounded(int, 0, 65535), default=8000, help="TCP port (0: any free port)")
    srv.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1: this machine only)")
    srv.add_argument(
        "--backend",
        choices=BACKEND_NAMES,
        default="auto",
        help="what runs the network (default auto: time the others at start-up and serve the fastest)",
    )
    srv.add_argument(
        "--model",
        choices=["auto", "imagenet", "digits"],
        default="auto",
        help="image model (COURSE_IMAGE_MODEL overrides)",
    )
    srv.add_argument(
        "--max-batch",
        type=bounded(int, 1, 256),
        default=1,
        help="dynamic batching: most images one network call takes (default 1: no batching)",
    )
    srv.add_argument(
        "--max-wait-ms",
        type=bounded(float, 0, 1000),
        default=DEFAULT_MAX_WAIT_MS,
        help="dynamic batching: longest a request waits for others to fill its batch (default %(default)s)",
    )
    srv.add_argument(
        "--max-queue",
        type=bounded(int, 1, 100_000),
        default=DEFAULT_MAX_QUEUE,
        help="dynamic batching: most requests waiting; more get 503 with Retry-After (default %(default)s)",
    )
    srv.add_argument(
        "--workers", type=bounded(int, 1, 64), default=1, help="uvicorn worker processes, each with its own model"
    )
    srv.set_defaults(func=_serve, validate=functools.partial(_validate_serve, srv))
    return parser


def _run_options(parser: argparse.ArgumentParser) -> None:
    """The options of the commands that run notebooks: time limit and parallelism."""
    parser.add_argument(
        "--timeout", type=bounded(float, 1, 86_400), default=600.0, help="seconds per notebook (default %(default)s)"
    )
    parser.add_argument(
        "--jobs", type=bounded(int, 1, 64), default=None, help="notebooks run at once (default: the number of cores)"
    )


def _validate_serve(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Refuse what no single flag's range catches (parser: the `serve` sub-command's, so errors name it)."""
    if args.max_queue < args.max_batch:
        parser.error(f"--max-queue ({args.max_queue}) must be at least --max-batch ({args.max_batch})")


def main(argv: list[str] | None = None) -> int:
    """Run the command line."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and not getattr(args, "passthrough", False):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if validate := getattr(args, "validate", None):
        validate(args)
    args.jupyter_args = extra
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
