"""One bounded worker pool, for the copy, the archive and verification.

`size` threads take tasks from a bounded queue, so a long list of work never waits in memory
as tasks. Each thread owns one resource (a database session, an SSH+SFTP session...), made by
`make()` for its first task and closed when the pool closes; a task is `fn(resource, *args)`
and its outcome a Future. The first failure stops the pool: tasks still queued are cancelled,
tasks already running finish. `map` raises that failure; a coordinator that records every
outcome as data (the copy pipeline, the archive) reads the futures itself.
"""

from __future__ import annotations

import os
import queue
import threading
from concurrent.futures import FIRST_COMPLETED, Future, wait
from typing import Any, Callable, Iterable, Iterator


def worker_count(spec_workers: int | None) -> int:
    """The spec's `transfer.workers`, or one per core."""
    return spec_workers or os.cpu_count() or 2


class Pool:
    def __init__(self, size: int, make: Callable[[], Any] | None = None, *, name: str = "worker"):
        self.make = make
        self.capacity = 2 * size  # threads busy plus tasks queued
        self.tasks: queue.Queue = queue.Queue(maxsize=size)
        self.failure: BaseException | None = None
        self.stopping = threading.Event()
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._work, name=f"{name}-{i}", daemon=True) for i in range(size)]
        for thread in self.threads:
            thread.start()

    def submit(self, fn: Callable, *args) -> Future:
        """Queue fn(resource, *args); waits while the queue is full."""
        future: Future = Future()
        self.tasks.put((future, fn, args))
        return future

    def full(self) -> bool:
        """Whether `submit` would wait (a coordinator that must keep recording asks first)."""
        return self.tasks.full()

    def each(self, fn: Callable, items: Iterable) -> Iterator[tuple[Any, Future]]:
        """fn(resource, item) for every item: (item, future) as each finishes, in completion
        order. After a failure the items not yet submitted are left out."""
        running: dict[Future, Any] = {}
        for item in items:
            while len(running) >= self.capacity:
                yield from _finished(running)
            if self.stopping.is_set():
                break
            running[self.submit(fn, item)] = item
        while running:
            yield from _finished(running)

    def map(self, fn: Callable, items: Iterable) -> list:
        """fn(resource, item) for every item, results in completion order; the first failure is
        raised once the tasks running beside it have finished."""
        done = [future for _, future in self.each(fn, items)]
        if self.failure is not None:
            raise self.failure
        return [future.result() for future in done]

    def close(self) -> None:
        for _ in self.threads:
            self.tasks.put(None)
        for thread in self.threads:
            thread.join()

    def __enter__(self) -> Pool:
        return self

    def __exit__(self, kind, exc, tb) -> None:
        if exc is not None:
            self.stopping.set()  # the caller gave up: what is still queued is not run
        self.close()

    def _work(self) -> None:
        resource = None
        try:
            while (task := self.tasks.get()) is not None:
                future, fn, args = task
                if self.stopping.is_set():
                    future.cancel()
                if not future.set_running_or_notify_cancel():
                    continue
                try:
                    if resource is None and self.make is not None:
                        resource = self.make()
                    result = fn(resource, *args)
                except BaseException as exc:  # noqa: BLE001 - handed to the future's reader
                    self._failed(exc)
                    future.set_exception(exc)
                else:
                    future.set_result(result)
        finally:
            if resource is not None:
                resource.close()

    def _failed(self, exc: BaseException) -> None:
        with self.lock:
            if self.failure is None:
                self.failure = exc
        self.stopping.set()


def _finished(running: dict[Future, Any]) -> Iterator[tuple[Any, Future]]:
    done, _ = wait(running, return_when=FIRST_COMPLETED)
    for future in done:
        yield running.pop(future), future
