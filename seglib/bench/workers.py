"""The parent's side of the step workers (`stepworker`): start them, hand each its spec, let them take
turns, and say what went wrong when one fails."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from typing import Any

WORKER = "seglib.bench.stepworker"


class StepWorkerError(RuntimeError):
    """A step worker failed; the message quotes the end of its stderr."""


class StepWorker:
    """One `python -m seglib.bench.stepworker` process in environment `env`: `start()` hands it `spec` and
    waits until it is warmed up, `run()` times one round, `close()` ends it. A context manager."""

    def __init__(self, spec: dict[str, Any], env: dict[str, str] | None = None, label: str = "") -> None:
        self.spec, self.label = spec, label or str(spec.get("mode"))
        self.ready: dict[str, Any] = {}
        self._imported = False
        self._stderr = tempfile.TemporaryFile("w+")  # noqa: SIM115 (closed by _cleanup)
        self._proc = subprocess.Popen(
            [sys.executable, "-m", WORKER],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            text=True,
            env=env,
        )
        stdin, stdout = self._proc.stdin, self._proc.stdout
        assert stdin is not None and stdout is not None  # both are pipes: PIPE above
        self._stdin, self._stdout = stdin, stdout

    def __enter__(self) -> StepWorker:
        return self

    def __exit__(self, exc_type: type | None, *exc: Any) -> None:
        if exc_type is None:
            self.close()
        else:
            self.kill()

    @property
    def returncode(self) -> int | None:
        return self._proc.returncode

    def wait_imported(self) -> None:
        """Block until the worker has imported torch and seglib (its "hello")."""
        if not self._imported:
            self._expect("hello")
            self._imported = True

    def start(self) -> dict[str, Any]:
        """Send the spec; wait until the models are built and warmed up. Its "ready" message."""
        self.wait_imported()
        self._send(self.spec)
        self.ready = self._expect("ready")
        return self.ready

    def run(self) -> dict[str, Any]:
        """One timed round: {"rates": {format: images/s}, "peak_mb": {...}, "allocator": ...}."""
        return self._expect("rates", "run")

    def close(self) -> int:
        """Send "quit" and wait for the worker to end; StepWorkerError unless it exits with status 0."""
        if self._proc.poll() is None:
            self._send("quit")
            try:
                self._proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.kill()
                raise self._error("did not quit within 60 s") from None
        if self._proc.returncode:
            raise self._error(f"exited with status {self._proc.returncode}")
        self._cleanup()
        return 0

    def kill(self) -> None:
        """End the worker now (on an error of the parent's)."""
        if self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()
        self._cleanup()

    def _cleanup(self) -> None:
        for f in (self._stdin, self._stdout, self._stderr):
            if not f.closed:
                f.close()

    def _send(self, message: Any) -> None:
        try:
            self._stdin.write(json.dumps(message) + "\n")
            self._stdin.flush()
        except OSError:  # it has exited: the read that follows says why
            pass

    def _expect(self, key: str, command: str | None = None) -> dict[str, Any]:
        if command is not None:
            self._send(command)
        line = self._stdout.readline()
        if not line:
            try:
                code = self._proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                code = self._proc.wait()
            raise self._error(f"exited with status {code} before its {key!r} message")
        try:
            message = json.loads(line)
        except ValueError:
            message = None
        if not isinstance(message, dict) or key not in message:
            self._proc.kill()
            raise self._error(f"sent {line[:200]!r} instead of its {key!r} message")
        return message

    def _error(self, what: str) -> StepWorkerError:
        tail = ""
        if not self._stderr.closed:
            self._stderr.seek(0)
            tail = self._stderr.read()[-3000:].strip()
        self._cleanup()
        return StepWorkerError(
            f"step worker {self.label!r} (python -m {WORKER}, {self.spec.get('model')!r}) {what}; "
            f"its stderr ends:\n{tail or '(empty)'}"
        )


@contextmanager
def step_workers(
    configs: Mapping[str, tuple[dict[str, Any], dict[str, str] | None]],
) -> Iterator[dict[str, StepWorker]]:
    """Workers by label from (spec, env): all import at once, then each builds, probes and warms up in
    turn, alone on the machine. They are closed on leaving (killed on an error)."""
    with ExitStack() as stack:
        workers = {
            label: stack.enter_context(StepWorker(spec, env, label)) for label, (spec, env) in configs.items()
        }
        for worker in workers.values():
            worker.wait_imported()
        for worker in workers.values():
            worker.start()
        yield workers


def run_rounds(workers: dict[str, StepWorker], reps: int) -> dict[str, list[dict[str, Any]]]:
    """`reps` rounds of one "run" per worker in turn (A B C A B C ...); each times with the machine to
    itself, and a drift of clock or temperature falls on all alike. The answers by label."""
    answers: dict[str, list[dict[str, Any]]] = {label: [] for label in workers}
    for _ in range(reps):
        for label, worker in workers.items():
            answers[label].append(worker.run())
    return answers
