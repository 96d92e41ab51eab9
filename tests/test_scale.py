"""Several servers of one model, batches of images on threads and on a Dask cluster, the memo's place."""

import json
import os
import re
import subprocess
import sys
from concurrent.futures import Future
from pathlib import Path
from types import SimpleNamespace

import pytest

from conftest import free_port, make_photo, run_cli
from mosaic.backend import Backend
from mosaic.engine import Outcome
from mosaic.errors import BadOption
from mosaic.memo import Memo, network_filesystem
from mosaic.offline.server import Fault, ModelServer
from testkit.fake_vlm import fake_vlm
from mosaic.servers import ServerPool

pytestmark = pytest.mark.slow  # the fast lane (-m 'not slow') leaves these to CI


class Clock:
    now = 100.0

    def __call__(self):
        return self.now


def test_the_pool_sends_each_call_to_the_least_busy_server_with_a_free_slot():
    pool = ServerPool(["a", "b"], slots=2)
    held = [pool.hold() for _ in range(4)]
    chosen = [h.__enter__() for h in held]
    assert sorted(chosen) == ["a", "a", "b", "b"] and chosen[:2] == ["a", "b"]
    assert pool.choose() is None  # every slot of both servers is taken
    held[1].__exit__(None, None, None)  # b frees one
    assert pool.choose() == "b"


def test_a_failing_server_cools_down_and_its_calls_go_to_the_other():
    clock = Clock()
    pool = ServerPool(["a", "b"], slots=2, cooldown_s=30, clock=clock)
    with pytest.raises(ConnectionError), pool.hold() as first:
        assert first == "a"
        raise ConnectionError("refused")
    assert [pool.choose() for _ in range(1)] == ["b"]
    with pool.hold() as address:
        assert address == "b"
        assert pool.choose() == "b"  # a is cooling down although it has free slots
    clock.now += 31
    assert pool.choose() == "a"


def test_a_bad_request_does_not_cool_a_server_down():
    class Refused(Exception):
        status_code = 400

    pool = ServerPool(["a", "b"], slots=1)
    with pytest.raises(Refused), pool.hold():
        raise Refused()
    assert pool.cool_until["a"] == 0.0


def test_when_every_server_cools_down_the_one_back_first_is_used():
    clock = Clock()
    pool = ServerPool(["a", "b"], slots=1, cooldown_s=30, clock=clock)
    for _ in range(2):
        with pytest.raises(TimeoutError), pool.hold():
            raise TimeoutError()
        clock.now += 5
    assert pool.choose() == "a"


def test_several_addresses_and_the_memo_identity():
    backend = Backend.create("openai/m", "http://b:1/v1/, http://a:1/v1")
    assert backend.api_base == "http://b:1/v1" and backend.servers == ["http://b:1/v1", "http://a:1/v1"]
    assert backend.pooled and backend.memo_address == "http://a:1/v1,http://b:1/v1"  # not which one answered
    assert backend.limit_name_of("http://a:1/v1") != backend.limit_name_of("http://b:1/v1")
    assert [t for t in backend.tags() if t.startswith("backend:")] == ["backend:http://b:1/v1", "backend:http://a:1/v1"]
    single = Backend.create("openai/m", "http://a:1/v1")
    assert not single.pooled and single.memo_address == "http://a:1/v1"  # today's keys
    same = Backend.create("openai/m", "http://a:1/v1", same_weights=True)
    assert same.pooled and same.memo_address is None


def test_same_weights_share_answers_across_addresses(tmp_path, monkeypatch, photo):
    import mosaic

    monkeypatch.setenv("MOSAIC_SAME_WEIGHTS", "true")
    with ModelServer(fake_vlm) as one:
        first = mosaic.review(str(photo), model="openai/fake-vl", api_base=one.openai_base, phases=["text"])
    with ModelServer(fake_vlm) as other:  # another address, the same weights: every answer is in the memo
        again = mosaic.review(str(photo), model="openai/fake-vl", api_base=other.openai_base, phases=["text"])
        assert again.calls.made == 0 and again.calls.cached == first.calls.total and not other.requests
    monkeypatch.setenv("MOSAIC_SAME_WEIGHTS", "false")
    with ModelServer(fake_vlm) as third:
        keyed = mosaic.review(str(photo), model="openai/fake-vl", api_base=third.openai_base, phases=["text"])
        assert keyed.calls.made == first.calls.total  # keys include the address


@pytest.mark.parametrize("style", ["openai", "ollama"])
def test_a_review_spreads_over_two_servers_and_goes_on_when_one_is_down(tmp_path, photo, style):
    import mosaic

    model = "openai/fake-vl" if style == "openai" else "ollama_chat/fake-vl"
    with ModelServer(fake_vlm, latency=0.05, slots=2) as a, ModelServer(fake_vlm, latency=0.05, slots=2) as b:
        base = (lambda s: s.openai_base) if style == "openai" else (lambda s: s.url)
        bases = f"{base(a)},{base(b)}"
        report = mosaic.review(str(photo), model=model, api_base=bases, phases=["text"], concurrency=4)
        assert report.complete and len(a.requests) + len(b.requests) == report.calls.made
        assert min(len(a.requests), len(b.requests)) >= 0.3 * report.calls.made
        a.add_fault(Fault(status=503, times=-1))  # down from now on
        by_a, by_b = len(a.chat_requests()), len(b.chat_requests())
        other = make_photo(tmp_path / "other.png", size=(1000, 900))
        again = mosaic.review(str(other), model=model, api_base=bases, phases=["text"], concurrency=4)
        assert again.complete and len(b.chat_requests()) - by_b == again.calls.made
        assert len(a.chat_requests()) == by_a and len(a.chat_requests(answered_only=False)) - by_a <= 4  # cooled down


def test_the_memo_refuses_a_network_file_system(tmp_path, monkeypatch):
    mounts = "srv:/export /mnt/team nfs4 rw 0 0\n/dev/vda1 / ext4 rw 0 0\n/dev/vdb /mnt/team/local ext4 rw 0 0\n"
    assert network_filesystem(Path("/mnt/team/cache"), mounts) == ("nfs4", "/mnt/team")
    assert network_filesystem(Path("/mnt/team/local/cache"), mounts) is None  # the deeper mount decides
    assert network_filesystem(Path("/mnt/teams"), mounts) is None
    monkeypatch.setattr("mosaic.memo.network_filesystem", lambda d: ("nfs4", "/mnt/team"))
    with pytest.raises(BadOption, match="network file system"):
        Memo(tmp_path / "memo")


@pytest.fixture
def folder(tmp_path):
    images = tmp_path / "photos"
    images.mkdir()
    for i in range(3):
        make_photo(images / f"p{i}.png", size=(1000 + 150 * i, 800))
    return images


def test_a_batch_reviews_every_image_names_the_failed_and_a_rerun_makes_only_the_missing_calls(tmp_path, folder):
    (folder / "broken.jpg").write_bytes(b"not an image")
    with ModelServer(fake_vlm, slots=2) as a, ModelServer(fake_vlm, slots=2) as b:
        args = ["batch", str(folder), "--model", "openai/fake-vl", "--api-base", a.openai_base, "--api-base",
                b.openai_base, "--phases", "text", "--json", "--out", str(tmp_path / "out")]
        code, out = run_cli(*args)
        summary = json.loads(out)
        assert code == 1  # one image failed
        states = {Path(i["image"]).name: i["state"] for i in summary["images"]}
        assert states == {"broken.jpg": "failed", "p0.png": "reviewed", "p1.png": "reviewed", "p2.png": "reviewed"}
        assert summary["totals"]["reviewed"] == 3 and summary["totals"]["failed"] == 1
        made = summary["totals"]["calls_made"]
        assert made == len(a.requests) + len(b.requests) and a.requests and b.requests
        for image in summary["images"][1:]:
            assert (Path(image["report_dir"]) / "report.json").is_file() and image["calls"]["made"] > 0
        (folder / "broken.jpg").unlink()
        code, out = run_cli(*args)
        again = json.loads(out)
        assert code == 0 and again["totals"]["calls_made"] == 0 and len(a.requests) + len(b.requests) == made


def test_a_batch_names_bad_input_in_one_line(tmp_path, capsys):
    code, _ = run_cli("batch", str(tmp_path / "nowhere"))
    assert code == 2 and "no such folder" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    code, _ = run_cli("batch", str(tmp_path / "empty"))
    assert code == 2 and "no images" in capsys.readouterr().err
    code, _ = run_cli("batch", str(tmp_path / "empty"), "--dask-address", "tcp://127.0.0.1:1")
    assert code == 2 and "--runner dask" in capsys.readouterr().err


def _dask_worker(scheduler: str, cache: Path) -> subprocess.Popen:
    """A worker as on another machine: its own cache folder, PREFECT_API_URL at the Prefect server the runs use
    (this process's temporary one, so no worker starts one of its own)."""
    from mosaic_flows.temporary_server import temporary_server_env

    env = {**os.environ, "MOSAIC_CACHE_DIR": str(cache), **temporary_server_env()}
    return subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_worker", scheduler, "--nthreads", "2",
                             "--no-dashboard", "--no-nanny"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def test_a_batch_on_a_dask_cluster_whose_workers_have_memos_of_their_own(tmp_path, folder):
    """Two worker processes, each with its own cache folder, as on two machines: the crops travel with the tasks,
    every image is reviewed, and the answers are kept in this machine's memo as well."""
    port = free_port()
    scheduler = subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1",
                                  "--port", str(port), "--no-dashboard"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    address = f"tcp://127.0.0.1:{port}"
    workers = [_dask_worker(address, tmp_path / f"worker{i}") for i in range(2)]
    try:
        from distributed import Client

        with Client(address, timeout=60) as client:
            client.wait_for_workers(2, timeout=120)
        with ModelServer(fake_vlm, slots=2) as server:
            code, out = run_cli("batch", str(folder), "--model", "openai/fake-vl", "--api-base", server.openai_base,
                                "--phases", "text", "--runner", "dask", "--dask-address", address, "--json")
            summary = json.loads(out)
            assert code == 0 and summary["totals"]["reviewed"] == 3
            made = summary["totals"]["calls_made"]
            assert made == len(server.requests) > 0
            for i in range(2):  # both workers called the model and kept their answers
                assert Memo(tmp_path / f"worker{i}").stats()["entries"] > 0
            code, out = run_cli("batch", str(folder), "--model", "openai/fake-vl", "--api-base", server.openai_base,
                                "--phases", "text", "--json")
            assert code == 0 and json.loads(out)["totals"]["calls_made"] == 0 and len(server.requests) == made
    finally:
        for process in workers + [scheduler]:
            process.terminate()
        for process in workers + [scheduler]:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()


def test_the_inbox_reviews_its_new_images_as_one_batch_on_a_dask_cluster(tmp_path, folder):
    """The scheduled inbox's batch path: new images in one mosaic-batch run on a local Dask cluster, calls over two
    servers, a marker per reviewed image; the next sweep finds nothing new and makes no call."""
    from mosaic_flows.inbox import review_inbox

    with ModelServer(fake_vlm, slots=2) as a, ModelServer(fake_vlm, slots=2) as b:
        parameters = dict(inbox=str(folder), outbox=str(tmp_path / "outbox"), model="openai/fake-vl",
                          api_base=f"{a.openai_base},{b.openai_base}", phases=["text"], runner="dask")
        first = review_inbox(**parameters)
        assert sorted(first["reviewed"]) == ["p0.png", "p1.png", "p2.png"] and first["skipped"] == []
        assert len(list((tmp_path / "outbox" / ".mosaic-reviewed").glob("*.json"))) == 3
        assert len(list((tmp_path / "outbox").glob("*/report.json"))) == 3
        made = len(a.requests) + len(b.requests)
        assert a.requests and b.requests
        again = review_inbox(**parameters)
        assert again["reviewed"] == [] and sorted(again["skipped"]) == ["p0.png", "p1.png", "p2.png"]
        assert len(a.requests) + len(b.requests) == made
        state = review_inbox(**{**parameters, "runner": "cluster"}, return_state=True)
        assert state.is_failed() and "runner must be one of images, threads, dask" in state.message


def test_a_batch_on_the_local_prefect_server_is_in_history_show_and_rerun(tmp_path, folder):
    """A user's `mosaic batch` with Mosaic's local Prefect server: history lists it with its counts, show lists each
    image with its state and report, rerun runs it again from the memo."""
    from mosaic_cli.local_server import LocalServer

    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("PREFECT_API_URL", "MOSAIC_PREFECT_SERVER")}
    env.update(PREFECT_HOME=str(tmp_path / "prefect-home"), MOSAIC_SERVER_PORT=str(port),
               MOSAIC_CACHE_DIR=str(tmp_path / "memo"), MOSAIC_OUT_DIR=str(tmp_path / "reports"))

    def mosaic(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "mosaic_cli", *args], capture_output=True, text=True, env=env,
                              timeout=300)

    try:
        with ModelServer(fake_vlm, slots=2) as server:
            done = mosaic("batch", str(folder), "--model", "openai/fake-vl", "--api-base", server.openai_base,
                          "--phases", "text", "--json")
            assert done.returncode == 0, done.stderr
            made = json.loads(done.stdout)["totals"]["calls_made"]
            rows = json.loads(mosaic("history", "--inbox", "--json").stdout)
            batch = [r for r in rows if r["run"].startswith("batch-")]
            assert len(batch) == 1 and batch[0]["image"] == "3 images" and batch[0]["calls"] == made > 0
            shown = mosaic("show", batch[0]["run"]).stdout
            assert sorted(re.findall(r"^(p\d\.png): reviewed, \d+ calls made", shown, re.M)) == ["p0.png", "p1.png", "p2.png"]
            again = mosaic("rerun", batch[0]["run"])
            assert again.returncode == 0 and f"0 calls made, {made} from the memo" in again.stderr, again.stderr
            assert len(server.requests) == made
    finally:
        LocalServer(port, tmp_path / "prefect-home").stop()


def test_a_batch_whose_tasks_ask_several_items_names_the_failed_tile_and_a_rerun_asks_only_it(tmp_path, folder):
    """Items asked together in one task (works_per_task): a tile that always fails fails its image alone, named;
    the items answered beside it in the same task are kept, so after the fault the rerun asks only that tile's
    call and the final review."""
    with ModelServer(fake_vlm, slots=2) as server:
        server.add_fault(Fault(status=500, times=-1, match="This crop is tile r1c2 "))
        args = ["batch", str(folder), "--model", "openai/fake-vl", "--api-base", server.openai_base, "--grid", "2x2",
                "--phases", "text", "--no-second-look", "--json", "--out", str(tmp_path / "out")]
        code, out = run_cli(*args)
        summary = json.loads(out)
        assert code == 1 and summary["totals"]["failed"] == 3
        assert all("r1c2" in image["error"] for image in summary["images"]), summary["images"]
        answered = len([r for r in server.requests if r.status == 200])
        server.clear_faults()
        code, out = run_cli(*args)
        again = json.loads(out)
        assert code == 0 and again["totals"]["reviewed"] == 3
        # per image (10 calls: orientation, 4 tiles, 4 seams, review; one phase needs no synthesis): r1c2's view, the review
        assert again["totals"]["calls_made"] == 3 * (1 + 1)
        assert len([r for r in server.requests if r.status == 200]) == answered + again["totals"]["calls_made"]


class _Queue:
    """Stands for a Review in the driver's bookkeeping: steps waiting to be handed out."""

    def __init__(self, names, sizes=None):
        self.items, self.out, self.sizes = list(names), 0, sizes or {}  # sizes: calls of a step, 1 if not given

    @property
    def waiting(self):
        return len(self.items)

    @property
    def waiting_calls(self):
        return sum(self.sizes.get(t, 1) for t in self.items)

    @property
    def finished(self):
        return not self.items and not self.out

    def ready(self, n=None, calls=None):  # as Review.ready: a step over the calls left waits, unless it is the first
        taken, asked = [], 0
        for t in list(self.items):
            size = self.sizes.get(t, 1)
            if (n is not None and len(taken) >= n) or (calls is not None and taken and asked + size > calls):
                continue
            taken.append(t)
            asked += size
            self.items.remove(t)
        self.out += len(taken)
        return [SimpleNamespace(name=t, needs_backend=True, calls=[t] * self.sizes.get(t, 1)) for t in taken]

    def done(self, work, outcome):
        self.out -= 1

    def report(self, elapsed_s):
        return SimpleNamespace(complete=True, report_dir=None, calls=None)


class _Recorder:
    """An executor whose futures are done at once; it records the groups of steps it was given."""

    def __init__(self):
        self.groups = []

    def steps(self, works, addresses):
        self.groups.append([w.name for _, w in works])
        future = Future()
        future.set_result([Outcome() for _ in works])
        return future

    def save(self, job, report):
        future = Future()
        future.set_result(f"out/{job.name}")
        return future


def test_ready_steps_are_shared_evenly_over_free_slots_and_the_first_images_go_first():
    from mosaic.driver import drive, jobs_of

    jobs = jobs_of([f"{name}.png" for name in "abc"])
    for job, items in zip(jobs, (["a1", "a2", "a3"], ["b1", "b2", "b3", "b4", "b5"], [])):
        job.state, job.review = "running", _Queue(items)
    recorder = _Recorder()
    drive(jobs, recorder, in_flight=4, per_task=8)
    # 8 ready over 4 slots: 2 per task, the first image's first; then one each as fewer are left
    assert recorder.groups == [["a1", "a2"], ["a3", "b1"], ["b2"], ["b3"], ["b4"], ["b5"]]
    assert [j.state for j in jobs] == ["reviewed"] * 3
    jobs = jobs_of(["c.png"])
    jobs[0].state, jobs[0].review = "running", _Queue([f"c{i}" for i in range(40)])
    recorder = _Recorder()
    drive(jobs, recorder, in_flight=2, per_task=8)
    assert [len(g) for g in recorder.groups[:2]] == [8, 8]  # never more than per_task
    with pytest.raises(ValueError, match="at least 1"):
        drive(jobs, recorder, in_flight=2, open_at_once=0)


def test_a_task_asks_no_more_than_a_slots_share_of_the_calls_waiting():
    """A view of three phases is a slot's share of 11 waiting calls over 4 slots: it goes alone. Grouped with two
    more views by their number, its task took 2.1 s of 0.5-s calls and held back the stage that waits for every
    view (1.5 s at best; docs/bench/span-no-witnesses.md)."""
    from mosaic.driver import drive, jobs_of

    jobs = jobs_of(["d.png"])
    views = ["all"] + [f"v{i}" for i in range(8)]
    jobs[0].state, jobs[0].review = "running", _Queue(views, sizes={"all": 3})
    recorder = _Recorder()
    drive(jobs, recorder, in_flight=4, per_task=8)
    assert recorder.groups[:4] == [["all"], ["v0", "v1"], ["v2", "v3"], ["v4"]]
    assert sorted(v for g in recorder.groups for v in g) == sorted(views)
