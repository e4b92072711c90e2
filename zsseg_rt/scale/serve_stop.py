"""How ``zsseg serve`` stops without a 404: the replicas stop admitting, finish what they hold, and
only then does the cluster go, the HTTP proxy with it.

Deleting the application first (``serve.delete``) took its route off the proxy at once, so every request that
reached the proxy after that was answered by Ray with a plain-text 404 "Path '/segment' not found" (23 of 100
clients of a burst stopped by SIGTERM): a client reads a 404 as the route gone for good and does not retry. Now the
driver sets one flag (a named actor, :class:`StopFlag`); each replica, watching it from its first request, answers
every request after it with a JSON 503 and ``Retry-After`` (:data:`STOPPING_RETRY_S`) and reports once the requests
it admitted are answered; the driver waits for those reports (:func:`stop_accepting`), then ends the cluster, the
proxy with it (a client then finds no server: connection refused, never a 404)."""

from __future__ import annotations

import asyncio
import time
from typing import List, Optional

STOP_FLAG = "zsseg-serve-stop"  # the flag actor's name, in STOP_NAMESPACE
STOP_NAMESPACE = "zsseg"
STOPPING_RETRY_S = 10  # Retry-After of a request answered while the server stops: a restart's order of time
STOPPING = (
    "the server is stopping: this request was not processed; send it again after {} s (Retry-After), to this "
    "address once the server is back, or to another one"
)


class StopFlag:
    """Set once by the driver; replicas wait on it (:meth:`wait_stopping`) and report when drained. Run as a Ray
    async actor (:func:`create_stop_flag`); plain methods here so that a test can run it without Ray."""

    def __init__(self) -> None:
        self._set = asyncio.Event()
        self._watching: set = set()
        self._drained: set = set()

    def is_stopping(self) -> bool:
        return self._set.is_set()

    async def wait_stopping(self, replica: str) -> bool:
        self._watching.add(replica)
        await self._set.wait()
        return True

    def stop(self) -> None:
        self._set.set()

    def drained(self, replica: str) -> None:
        self._drained.add(replica)

    def pending(self) -> List[str]:
        """The replicas that watch the flag and have not reported that they hold no request."""
        return sorted(self._watching - self._drained)


_HELD: List = []  # the driver's handle of its flag: a named actor lives while a handle does (not detached)


def create_stop_flag() -> str:
    """The flag actor of this driver (no CPU reserved; it ends with the driver's cluster or job); returns its name."""
    import ray

    actor = ray.remote(num_cpus=0)(StopFlag)
    _HELD[:] = [actor.options(name=STOP_FLAG, namespace=STOP_NAMESPACE, get_if_exists=True).remote()]
    return STOP_FLAG


def stop_accepting(timeout_s: float = 60.0, poll_s: float = 0.1) -> List[str]:
    """Set the flag, then wait (at most ``timeout_s``) until every replica watching it has answered what it admitted.
    Returns the replicas still busy at the time-out (empty: drained); no flag (the server never deployed): []."""
    import ray

    try:
        flag = ray.get_actor(STOP_FLAG, namespace=STOP_NAMESPACE)
    except ValueError:
        return []
    ray.get(flag.stop.remote())
    deadline = time.monotonic() + timeout_s
    while True:
        pending = ray.get(flag.pending.remote())
        if not pending or time.monotonic() >= deadline:
            return pending
        time.sleep(poll_s)


class StopWatch:
    """A replica's side: :meth:`start` (awaited on its first request) reads the flag and watches it; ``stopping``
    turns True when it is set; :meth:`idle` (called whenever the replica's in-flight count drops to 0) lets the
    watch report the replica drained. ``flag``: the flag actor's handle (or an object with the same methods whose
    calls return awaitables, in tests)."""

    def __init__(self, flag, replica: str):
        self.flag, self.replica = flag, replica
        self.stopping = False
        self._task: Optional[asyncio.Future] = None
        self._idle = asyncio.Event()

    @property
    def started(self) -> bool:
        return self._task is not None

    async def start(self, in_flight) -> None:
        """``in_flight``: a callable giving the replica's admitted requests now."""
        self._task = asyncio.ensure_future(self._watch(in_flight))
        self.stopping = bool(await self.flag.is_stopping.remote())

    def idle(self) -> None:
        self._idle.set()

    async def _watch(self, in_flight) -> None:
        await self.flag.wait_stopping.remote(self.replica)
        self.stopping = True
        while in_flight():
            self._idle.clear()
            await self._idle.wait()
        await self.flag.drained.remote(self.replica)
