"""Background jobs: preparing an upload, training, exporting. Each runs as its own `ganforge` process (in
its own session, so the studio can be stopped and started again without touching it), one at a time by
default and queued otherwise. The jobs table says what each is doing; a supervisor thread starts the next
queued job, notices the end of a running one, and queues the export after a training run. A stop sends
the process Ctrl-C (SIGINT), on which ganforge saves everything; resume continues the run from its last
checkpoint (`ganforge train --resume RUN`). After a restart, a job whose process is gone is resumed.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading

from sqlalchemy import select
from sqlalchemy.orm import object_session

from ganforge.studio.db import Job, now
from ganforge.studio.folder import StudioFolder

ACTIVE = ("queued", "running", "stopping")


def _alive(pid: int | None) -> bool:
    """Whether a process an earlier studio started still runs."""
    if not pid:
        return False
    try:  # a child of this process (another studio app in it, as in tests): reap it if it has ended
        done, _ = os.waitpid(pid, os.WNOHANG)
        return done == 0
    except ChildProcessError:
        pass  # not our child: an earlier studio's
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    return True


class Jobs:
    def __init__(self, folder: StudioFolder, sessions, parallel: int = 1, poll: float = 1.0):
        self.folder, self.sessions, self.parallel, self.poll = folder, sessions, parallel, poll
        self.logs = folder.root / "jobs"
        self.logs.mkdir(exist_ok=True)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._runs_before: dict[int, set[str]] = {}
        self._processes: dict[int, subprocess.Popen] = {}  # the jobs this studio started
        self._adopt()

    # --- asking -------------------------------------------------------------------------------------

    def submit(self, kind: str, args: dict, run: str | None = None) -> Job:
        with self.sessions.begin() as s:
            job = Job(kind=kind, args=args, run=run, status="queued")
            s.add(job)
        self.tick()
        return job

    def stop(self, job_id: int) -> Job:
        with self.sessions.begin() as s:
            job = s.get(Job, job_id)
            if job is None or job.status not in ACTIVE:
                return job
            if job.status == "queued":
                job.status, job.finished = "stopped", now()
            elif job.pid:
                try:
                    os.killpg(job.pid, signal.SIGINT)  # ganforge saves a checkpoint and exits
                except OSError:
                    pass
                job.status = "stopping"
        return job

    def resume(self, job_id: int) -> Job | None:
        with self.sessions.begin() as s:
            job = s.get(Job, job_id)
            if job is None or job.kind != "train" or not job.run or job.status in ACTIVE:
                return None
            run = job.run
        return self.submit("train", {"resume": run}, run=run)

    def list(self) -> list[Job]:
        with self.sessions() as s:
            return list(s.scalars(select(Job).order_by(Job.id.desc()).limit(100)))

    def get(self, job_id: int) -> Job | None:
        with self.sessions() as s:
            return s.get(Job, job_id)

    def log_tail(self, job_id: int, lines: int = 20) -> str:
        path = self.logs / f"{job_id}.log"
        try:
            return "\n".join(path.read_text(encoding="utf-8", errors="replace").replace("\r", "\n").splitlines()[-lines:])
        except OSError:
            return ""

    # --- the supervisor -----------------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="ganforge-jobs", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=5)

    def _loop(self) -> None:
        while not self._stop.wait(self.poll):
            try:
                self.tick()
            except Exception as err:  # the studio keeps serving; the job table says what happened
                print(f"studio jobs: {err}", file=sys.stderr)

    def tick(self) -> None:
        with self._lock, self.sessions.begin() as s:
            running = list(s.scalars(select(Job).where(Job.status.in_(("running", "stopping")))))
            for job in running:
                self._watch(job)
            busy = sum(j.status in ("running", "stopping") for j in running)
            for job in s.scalars(select(Job).where(Job.status == "queued").order_by(Job.id)):
                if busy >= self.parallel:
                    break
                self._launch(job)
                busy += 1

    def _command(self, job: Job) -> list[str]:
        a = job.args
        base = [sys.executable, "-m", "ganforge"]
        if job.kind == "prepare":
            return base + ["prepare", a["source"], str(self.folder.datasets / a["name"]), "--resolution",
                           str(a["resolution"]), "-q"]
        if job.kind == "train" and "resume" in a:
            return base + ["train", "--resume", str(self.folder.runs / a["resume"]), "-q"]
        if job.kind == "train":
            overrides = [f"{k}={v}" for k, v in a.get("overrides", {}).items()]
            preset = ["--preset", a["preset"]] if a.get("preset") else []
            return base + ["train", str(self.folder.datasets / a["dataset"]), f"runs_dir={self.folder.runs}",
                           f"kimg={a['kimg']}", *overrides, *preset, "-q"]
        if job.kind == "export":
            return base + ["export", str(self.folder.runs / job.run)]
        raise ValueError(f"unknown job kind {job.kind}")

    def _launch(self, job: Job) -> None:
        log = open(self.logs / f"{job.id}.log", "ab")
        self._runs_before[job.id] = set(self.folder.run_names())
        process = subprocess.Popen(self._command(job), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   start_new_session=True, cwd=self.folder.root)
        log.close()
        self._processes[job.id] = process
        job.status, job.pid, job.started = "running", process.pid, now()

    def _watch(self, job: Job) -> None:
        if job.kind == "train" and not job.run:
            new = set(self.folder.run_names()) - self._runs_before.get(job.id, set(self.folder.run_names()))
            if new:
                job.run = sorted(new)[-1]
        process = self._processes.get(job.id)
        if process is not None:
            code = process.poll()
            if code is None:
                return
            del self._processes[job.id]
        elif _alive(job.pid):  # started by an earlier studio: still running
            return
        else:
            code = None  # an earlier studio's child: its exit status is gone
        stopped = job.status == "stopping" or code in (130, 143, -signal.SIGINT, -signal.SIGTERM)
        job.status = "stopped" if stopped else "done" if code == 0 else "failed"
        job.finished = now()
        job.message = self.log_tail(job.id, 5)[-1900:]
        if job.kind == "train" and job.run and job.status in ("done", "stopped"):
            object_session(job).add(Job(kind="export", args={}, run=job.run, status="queued"))

    def _adopt(self) -> None:
        """After a restart: running jobs whose process is gone are resumed (training) or run again."""
        with self.sessions.begin() as s:
            for job in s.scalars(select(Job).where(Job.status.in_(("running", "stopping")))):
                if _alive(job.pid):
                    continue
                if job.kind == "train" and job.run:
                    job.status, job.finished, job.message = "stopped", now(), "the studio stopped while it ran"
                    s.add(Job(kind="train", args={"resume": job.run}, run=job.run, status="queued"))
                else:
                    job.status, job.pid = "queued", None
