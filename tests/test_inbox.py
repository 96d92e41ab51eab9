"""An inbox left alone: files that cannot be reviewed are set aside with their reason, a file that failed for a
reason that may pass is tried again up to a limit, and two sweeps at once review no image twice."""

from __future__ import annotations

import logging
import threading

import pytest

from testkit.inbox_files import bad_files, good_photo
from conftest import free_port
from mosaic.inbox import ATTEMPTS_DIR, claim, failures, rejected_folder


def sweep(inbox, outbox, **options):
    from mosaic_flows.inbox import review_inbox

    return review_inbox(inbox=str(inbox), outbox=str(outbox), density="quick", phases=["text"], return_state=True,
                        **options)


def said(capfd, caplog) -> str:
    """What the sweep logged since last asked: on stderr, or (when Prefect's console went elsewhere in this
    process) in the captured log records."""
    text, records = capfd.readouterr().err, caplog.text
    caplog.clear()
    return text if "cannot be reviewed" in text else records


@pytest.mark.slow
def test_bad_files_are_set_aside_with_their_reason_and_the_sweep_completes(tmp_path, capfd, caplog):
    inbox, outbox = tmp_path / "inbox", tmp_path / "outbox"
    inbox.mkdir()
    good = [good_photo(inbox / "a.png", seed=1), good_photo(inbox / "thumb.png", (160, 120), seed=2)]
    bad = bad_files(inbox)
    state = sweep(inbox, outbox)
    assert state.is_completed(), state.message
    result = state.result()
    assert sorted(result["reviewed"]) == ["a.png", "thumb.png"]
    assert sorted(result["rejected"]) == sorted(p.name for p in bad.values())
    rejected = rejected_folder(outbox)
    assert rejected == tmp_path / "rejected"
    for kind, path in bad.items():
        assert not path.exists() and (rejected / path.name).exists(), kind  # moved, never deleted
        reason = (rejected / f"{path.name}.reason.txt").read_text()
        assert reason.count("\n") == 1 and reason.strip(), kind
    assert "too small: Mosaic needs at least 64 px" in (rejected / "tiny.png.reason.txt").read_text()
    assert "decompression-bomb" in (rejected / "bomb.png.reason.txt").read_text()
    assert all(p.exists() for p in good)
    logged = said(capfd, caplog)
    assert logged.count("cannot be reviewed") == len(bad) and "Traceback" not in logged

    (inbox / "notes.jpg").write_text("dropped again, same name")  # a second file of a rejected name keeps both
    again = sweep(inbox, outbox)
    assert again.is_completed() and again.result()["reviewed"] == [] and sorted(again.result()["skipped"]) == [
        "a.png", "thumb.png"]
    assert (rejected / "notes.jpg").exists() and (rejected / "notes-2.jpg.reason.txt").exists()
    assert said(capfd, caplog).count("cannot be reviewed") == 1  # the new file only: the others are said once


class Lines(logging.Handler):
    """The formatted records of Prefect's run loggers (a traceback is part of a formatted record)."""

    def __init__(self):
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))

    def __enter__(self):
        from mosaic_flows.expected_failures import RUN_LOGGERS

        self.names = RUN_LOGGERS
        for name in self.names:
            logging.getLogger(name).addHandler(self)
        return self

    def __exit__(self, *exc):
        for name in self.names:
            logging.getLogger(name).removeHandler(self)


def test_expected_failures_are_logged_in_one_line_and_others_with_their_traceback():
    import mosaic_flows  # noqa: F401  (installs the filter, as any run of a Mosaic flow does)
    from mosaic.errors import BackendError

    with Lines() as logged:
        for name, error in [("prefect.flow_runs", BackendError("the model server is down")),
                            ("prefect.task_runs", ValueError("a bug"))]:
            try:
                raise error
            except Exception as e:
                logging.getLogger(name).exception("Encountered exception during execution: %r", e)
    assert "server is down" in logged.lines[0] and "Traceback" not in logged.lines[0]
    assert "Traceback" in logged.lines[1]


@pytest.mark.slow
def test_a_model_server_down_leaves_the_image_for_the_next_sweep_up_to_a_limit(tmp_path, monkeypatch):
    monkeypatch.setenv("MOSAIC_INBOX_MAX_FAILURES", "2")
    inbox, outbox = tmp_path / "inbox", tmp_path / "outbox"
    inbox.mkdir()
    image = good_photo(inbox / "a.png", seed=3)
    down = dict(model="openai/fake-vl", api_base=f"http://127.0.0.1:{free_port()}/v1")
    with Lines() as logged:
        first = sweep(inbox, outbox, **down)
    assert first.is_failed() and "the next sweep tries them again" in first.message
    assert any("Encountered exception" in line for line in logged.lines)
    assert not any("Traceback" in line for line in logged.lines), logged.lines
    assert "--entrypoint flows/inbox.py:review_inbox" in first.message  # or retried now, by the right flow
    assert image.exists() and failures(outbox, image) == 1 and (outbox / ATTEMPTS_DIR / "a.png.json").exists()
    second = sweep(inbox, outbox, **down)
    assert second.is_completed(), second.message
    assert not image.exists() and second.result()["rejected"] == ["a.png"]
    assert "failed in 2 sweeps" in (rejected_folder(outbox) / "a.png.reason.txt").read_text()
    assert failures(outbox, image) == 0


@pytest.mark.slow
def test_two_sweeps_at_once_review_each_image_once(tmp_path):
    inbox, outbox = tmp_path / "inbox", tmp_path / "outbox"
    inbox.mkdir()
    names = sorted(good_photo(inbox / f"p{i}.png", seed=10 + i).name for i in range(4))
    results: list = []
    threads = [threading.Thread(target=lambda: results.append(sweep(inbox, outbox))) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(state.is_completed() for state in results), [s.message for s in results]
    reviewed = [name for state in results for name in state.result()["reviewed"]]
    assert sorted(reviewed) == names  # each once, by one sweep or the other


def test_a_claim_is_held_by_one_sweep_and_let_go_after(tmp_path):
    image = good_photo(tmp_path / "a.png")
    with claim(tmp_path / "outbox", image) as first:
        with claim(tmp_path / "outbox", image) as second:
            assert first and not second
    with claim(tmp_path / "outbox", image) as again:
        assert again


def test_the_work_pool_deployments_inbox_and_outbox_are_ignored_by_git():
    import subprocess
    from pathlib import Path

    import yaml

    root = Path(__file__).resolve().parent.parent
    parameters = yaml.safe_load((root / "deployments" / "prefect.yaml").read_text())["deployments"][0]["parameters"]
    folders = [parameters["inbox"], parameters["outbox"], str(rejected_folder(root / parameters["outbox"]).relative_to(root))]
    for folder in folders:
        done = subprocess.run(["git", "check-ignore", "-q", f"{folder}/photo.jpg"], cwd=root)
        assert done.returncode == 0, f"{folder}/ would show as untracked in the checkout"
