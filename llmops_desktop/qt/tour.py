"""A picture of the app: ``python -m llmops_desktop.qt.tour OUTDIR``.

Starts the window on a temporary data home, shows the empty-catalog welcome,
makes the demo model through the real "demo" job, then visits every page (and
the Import dialog and the About box) and saves one PNG of each.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

WINDOW_SIZE = (1280, 800)


def wait_until(predicate: Callable[[], bool], timeout_s: float) -> bool:
    """Run the event loop until ``predicate()`` holds or the time is up."""
    from PySide6.QtCore import QEventLoop, QTimer

    deadline = time.monotonic() + timeout_s
    loop = QEventLoop()
    timer = QTimer()
    timer.setInterval(50)
    timer.timeout.connect(lambda: loop.quit() if predicate() or time.monotonic() > deadline
                          else None)
    timer.start()
    if not predicate():
        loop.exec()
    timer.stop()
    return predicate()


def settle(seconds: float = 0.3) -> None:
    end = time.monotonic() + seconds
    wait_until(lambda: time.monotonic() >= end, seconds + 1)


def run_tour(outdir: Path, home_root: Path) -> list[Path]:
    os.environ["LLMOPS_HOME"] = str(home_root)
    from llmops_desktop.paths import Home
    from llmops_desktop.qt.app import create_application
    from llmops_desktop.qt.main_window import MainWindow

    create_application()
    window = MainWindow(Home.resolve(home_root))
    window.resize(*WINDOW_SIZE)
    window.show()
    outdir.mkdir(parents=True, exist_ok=True)
    shots: list[Path] = []

    def shoot(name: str, widget: object = window) -> None:
        settle()
        path = outdir / f"{len(shots) + 1:02d}-{name}.png"
        widget.grab().save(str(path))  # type: ignore[attr-defined]
        shots.append(path)
        print(path)

    shoot("welcome")
    finished: dict[int, str] = {}
    window.ctx.jobs.sig_job_finished.connect(lambda jid, state: finished.__setitem__(jid, state))
    job_id = window.start_demo()
    settle(1.5)
    shoot("welcome-making-demo")
    if not wait_until(lambda: job_id in finished, 180):
        raise SystemExit("the demo job did not finish in 3 minutes")
    if finished[job_id] != "succeeded":
        raise SystemExit(f"the demo job {finished[job_id]}: {window.ctx.catalog.job(job_id).error}")
    page = window.models_page
    wait_until(lambda: page.model.rowCount() > 0, 30)
    page.select_artifact(page.model.artifact_at(0).id)
    window.show_page("models")
    shoot("models")
    page.details.tabs.setCurrentIndex(1)
    shoot("models-files")
    page.details.tabs.setCurrentIndex(2)
    shoot("models-lineage")
    page.details.tabs.setCurrentIndex(0)

    dialog = window.open_import_dialog("folder", str(Path.home() / "models" / "my-model"))
    shoot("import-dialog", dialog)
    dialog.reject()

    jobs_page = window.show_page("jobs")
    jobs_page.select_job(job_id)  # type: ignore[attr-defined]
    wait_until(lambda: "succeeded" in jobs_page.log_view.toPlainText(), 5)  # type: ignore[attr-defined]
    shoot("jobs")
    window.show_page("settings")
    shoot("settings")
    box = window.show_about()
    shoot("about", box)
    box.accept()
    tour_quantize(window, shoot)
    tour_evaluate(window, shoot, home_root)
    tour_download_page(window, shoot)
    window.show_page("deployments")
    shoot("deployments")
    tour_serving(window, shoot)
    tour_prompts(window, shoot)
    for page_id in ("datasets", "finetune", "registries"):
        window.show_page(page_id)
        shoot(page_id)
    window.show_page("models")
    window.deployments_on_close = "stop"
    window.close()
    return shots


def tour_evaluate(window: object, shoot: Callable[[str], None], workdir: Path) -> None:
    """A six-item multiple-choice suite imported on the Evaluate page, the demo model and
    its smallest GGUF evaluated on it from the page (one job), and the Results tab with the
    matrix, the bars and the two compared."""
    import json

    page = window.show_page("evaluate")  # type: ignore[attr-defined]
    rows = [{"question": f"What is {a} plus {b}?", "answerKey": "A",
             "choices": {"text": [str(a + b), str(a + b + 1), str(a * b)],
                         "label": ["A", "B", "C"]}}
            for a, b in ((1, 2), (3, 4), (5, 6), (2, 7), (4, 4), (6, 1))]
    path = workdir / "arithmetic.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    page.suites.import_file(str(path))
    if not wait_until(lambda: page.suites.tree.topLevelItemCount() > 0, 20):
        print("the suite was not imported; skipping the Evaluate page")
        return
    shoot("evaluate-suites")
    artifacts = window.ctx.catalog.artifacts()  # type: ignore[attr-defined]
    ggufs = sorted((a for a in artifacts if a.kind == "gguf"), key=lambda a: a.size_bytes)
    refs = [a.ref for a in artifacts if a.kind == "hf"][:1] + [a.ref for a in ggufs[:1]]
    finished: dict[int, str] = {}
    window.ctx.jobs.sig_job_finished.connect(  # type: ignore[attr-defined]
        lambda jid, state: finished.__setitem__(jid, state))
    page.tabs.setCurrentIndex(1)
    page.run_form.set_checked(refs)
    page.run_form.select_suite("arithmetic@1")
    job_id = page.run_form.start()
    if job_id is None or not wait_until(lambda: job_id in finished, 180):
        print("the eval job did not finish in 3 minutes")
        return
    if page.matrix.rowCount() > 1:
        page.compare.compare()
        wait_until(lambda: page.compare.comparison is not None, 30)
    shoot("evaluate")


def tour_serving(window: object, shoot: Callable[[str], None]) -> None:
    """Serve the smallest GGUF, chat with it once, then look at it on the Monitor page."""
    page = window.deployments_page  # type: ignore[attr-defined]
    ggufs = [a for a in window.ctx.catalog.artifacts() if a.kind == "gguf"]  # type: ignore
    if not ggufs:
        return
    page.select_artifact(min(ggufs, key=lambda a: a.size_bytes).id)
    started: list[int] = []
    page.deploy.sig_started.connect(lambda key, _url: started.append(key))
    page.start_selected()
    if not wait_until(lambda: bool(started), 60):
        return
    shoot("deployments-running")
    window.chat_with(started[0])  # type: ignore[attr-defined]
    play = window.playground_page  # type: ignore[attr-defined]
    play.system_edit.setPlainText("You are a concise assistant.")
    play.max_tokens_spin.setValue(24)
    done: list[str] = []
    play.sig_reply_finished.connect(done.append)
    for text in ("Hello! What can you do?", "Say it in one line."):
        play.send(text)
        wait_until(lambda n=len(done) + 1: len(done) >= n, 60)
    shoot("playground")
    window.show_page("monitor")
    settle(4)
    shoot("monitor")


def tour_prompts(window: object, shoot: Callable[[str], None]) -> None:
    """One prompt in two versions, prod on the first, on the Prompts page."""
    from llmops_desktop.prompts.store import create_prompt

    catalog = window.ctx.catalog  # type: ignore[attr-defined]
    artifacts = catalog.artifacts()
    for template in ("Answer briefly: {{question}}", "Answer in one sentence: {{question}}"):
        v = create_prompt(catalog, "support-bot", template, params={"temperature": 0.2},
                          system_prompt="You help the customers of {{company}}.",
                          artifact_ref=artifacts[0].ref if artifacts else "",
                          alias="prod" if template.startswith("Answer briefly") else None)
    window.show_prompt(v.ref)  # type: ignore[attr-defined]
    shoot("prompts")


def tour_quantize(window: object, shoot: Callable[..., None]) -> None:
    """The Quantize dialog on the demo model (Q8_0 and Q4_K_M, F16 kept), its result, and
    the model's Variants tab with the size-vs-perplexity chart."""
    page = window.show_page("models")  # type: ignore[attr-defined]
    page.select_artifact(page.model.artifact_at(0).id)
    page.act_quantize.trigger()
    dialog = next(iter(page._quantize_dialogs.values()))
    wait_until(lambda: dialog.free_bytes is not None, 10)
    dialog.set_checked(["Q8_0", "Q4_K_M"])
    dialog.keep_check.setChecked(True)
    shoot("quantize", dialog)
    dialog.start_button.click()
    if not wait_until(lambda: not dialog.running, 300):
        print("the quantize job did not finish in 5 minutes")
        return
    shoot("quantize-done", dialog)
    dialog.show_variants_button.click()
    settle(1.5)
    shoot("variants")
    page.details.tabs.setCurrentIndex(0)
    dialog.close()


def tour_download_page(window: object, shoot: Callable[[str], None]) -> None:
    """The Download page offline (the default), then online against this very catalog served
    by the page's own "Share as mirror" on a free port, with the demo repo open."""
    from llmops_desktop.mirror.repos import repo_id_for
    from llmops_desktop.settings import save_settings

    page = window.show_page("download")  # type: ignore[attr-defined]
    shoot("download")
    ctx = window.ctx  # type: ignore[attr-defined]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ctx.settings = ctx.settings.updated(mirror_port=port)
    page.mirror_box.toggle.click()
    if not wait_until(lambda: page.mirror.is_ready(), 30):
        print("the mirror did not start; skipping the online Download page")
        page.mirror.stop(wait=True)
        return
    save_settings(ctx.home.settings_path, ctx.settings.updated(offline=False,
                                                               hf_endpoint=page.mirror.url))
    ctx.reload_settings()
    ctx.events.sig_settings_saved.emit(ctx.settings)
    page.search("")
    wait_until(lambda: page.results.topLevelItemCount() > 0, 10)
    page.results.setCurrentItem(page.results.topLevelItem(0))
    repo_id = repo_id_for(window.models_page.model.artifact_at(0).model_name)  # type: ignore
    wait_until(lambda: page.snapshot is not None and page.snapshot.repo_id == repo_id, 10)
    shoot("download-repo")
    page.mirror.stop(wait=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m llmops_desktop.qt.tour",
                                     description="Save one screenshot per page of the app.")
    parser.add_argument("outdir", type=Path)
    parser.add_argument("--keep-home", action="store_true",
                        help="keep the temporary data home and print where it is")
    args = parser.parse_args(argv)
    if not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    home_root = Path(tempfile.mkdtemp(prefix="llmops-tour-"))
    try:
        run_tour(args.outdir, home_root)
    finally:
        if args.keep_home:
            print(f"data home kept at {home_root}")
        else:
            shutil.rmtree(home_root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
