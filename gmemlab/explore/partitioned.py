"""One exploration across a Dask cluster: the table of keys found so far, partitioned.

The search driver (gmemlab.explore.search) keeps every state (its key, parent and
action) and decides the order of ids, and asks a *table* only two things per batch: which of these keys are already known (their state ids), and "remember these new
keys under these ids". ``PartitionedTable`` answers both with one Dask actor per worker,
each owning the keys whose hash falls to it: the driver sends each worker the keys that
hash to it and the worker stores or looks up only its share. Memory for the keys so
spreads over the cluster; the ids are still the driver's, given in the driver's order,
so the exploration -- and ``explore --json`` -- is byte-identical to the one in a single
process (tests/test_partitioned.py).

Why the hash is ours: Python's ``hash()`` of an int is the int itself (and a str's is
salted per process), so a key's owner is decided by a multiplicative hash of its 64 bits
(Knuth's golden-ratio constant), the same on every machine and every run.

Why adds are sent without waiting: the driver expands the next batch while the workers
merge the new keys in; the next lookup first waits for those adds, so a lookup always
sees every key added before it. Adds still in flight together may land in any order:
their keys are distinct, so the merged partition is the same.
"""

from __future__ import annotations

import numpy as np

from gmemlab.errors import UsageError
from gmemlab.explore.core import Exploration
from gmemlab.model.state import Config
from gmemlab.spec import Bounds, Spec

GOLDEN = np.uint64(0x9E3779B97F4A7C15)   # 2**64 / golden ratio, odd: a bijection on 64 bits
CALL_TIMEOUT = 120.0   # seconds for one call to a worker (a batch's share: well under one): past it, lost


def owner(keys: np.ndarray, parts: int) -> np.ndarray:
    """The partition (0..parts-1) of each int64 key: the high 32 bits of key * GOLDEN
    (wrapping), scaled to [0, parts) by a multiply and a shift, so every partition gets
    an even share however regular the keys' bit fields are.

    >>> owner(np.array([0, 1, 2, 3, -1], np.int64), 2).tolist()
    [0, 1, 0, 1, 0]
    """
    h = np.asarray(keys, np.int64).view(np.uint64) * GOLDEN
    return ((h >> np.uint64(32)) * np.uint64(parts) >> np.uint64(32)).astype(np.int64)


class Partition:
    """One worker's share of the table: its keys sorted, with their state ids. Lives on
    the worker as a Dask actor (its methods run one at a time: distributed.worker runs
    actor calls on a one-thread executor); the driver never reads it directly."""

    def __init__(self):
        self.k = np.empty(0, np.int64)
        self.s = np.empty(0, np.int32)

    def lookup(self, keys: np.ndarray) -> np.ndarray:
        """The state id of each key, -1 where absent."""
        if not len(self.k):
            return np.full(len(keys), -1, np.int32)
        pos = np.minimum(np.searchsorted(self.k, keys), len(self.k) - 1)
        return np.where(self.k[pos] == keys, self.s[pos], -1).astype(np.int32)

    def add(self, keys: np.ndarray, sids: np.ndarray) -> int:
        """Merge in new keys (sorted, absent) with the ids the driver gave them; the
        number of keys held after."""
        keys, sids = np.asarray(keys, np.int64), np.asarray(sids, np.int32)
        if len(keys) > 1 and (keys[1:] < keys[:-1]).any():   # the contract says sorted; be sure
            o = np.argsort(keys, kind="stable")
            keys, sids = keys[o], sids[o]
        at = np.searchsorted(self.k, keys)
        self.k = np.insert(self.k, at, keys)
        self.s = np.insert(self.s, at, sids)
        return len(self.k)

    def size(self) -> int:
        return len(self.k)

    def clear(self) -> int:
        """Free the partition; the number of keys it held."""
        n = len(self.k)
        self.k, self.s = np.empty(0, np.int64), np.empty(0, np.int32)
        return n


class PartitionedTable:
    """The search's table of keys found so far (the ``table`` of search.search), split
    by ``owner`` over one Partition actor per worker of ``client``'s cluster.

    ``workers``: the worker addresses to use (default: every worker the scheduler knows
    now, waiting up to ``timeout`` seconds for one). Any failure of the cluster -- a
    worker lost, a worker that cannot import gmemlab, a call past ``call_timeout`` -- is
    a UsageError naming the scheduler and what failed, never a hang."""

    def __init__(self, client, workers: list[str] | None = None, timeout: float = 10.0,
                 call_timeout: float = CALL_TIMEOUT):
        self.client, self.call_timeout = client, call_timeout
        self.where = getattr(getattr(client, "scheduler", None), "address", "?")
        self.n = 0
        self.failed = False
        self._pending: list = []   # add calls sent and not yet waited for
        self._closed_sizes: list[int] | None = None
        self.actors, self._futures = [], []
        if workers is None:
            workers = self._guard("listing the workers", lambda: self._workers(timeout))
        self.workers = list(workers)
        if not self.workers:
            raise UsageError(f"the Dask cluster at {self.where} has no workers to hold the state table")

        def start():
            self._futures = [client.submit(Partition, actor=True, workers=[w], allow_other_workers=False,
                                           pure=False) for w in self.workers]
            return [f.result(timeout=timeout) for f in self._futures]
        self.actors = self._guard("starting a partition on every worker (is gmemlab installed there?)", start)

    def _workers(self, timeout: float) -> list[str]:
        if not self.client.scheduler_info().get("workers"):
            try:   # a cluster just started may still be starting its workers
                self.client.wait_for_workers(1, timeout=timeout)
            except TimeoutError:
                raise UsageError(f"the Dask cluster at {self.where} has no workers to hold the state "
                                 f"table (none arrived within {timeout:g} s)") from None
        return sorted(self.client.scheduler_info()["workers"])

    def _guard(self, what: str, run):
        """run(), with every failure of the cluster turned into a UsageError."""
        if self._closed_sizes is not None:
            raise UsageError("the partitioned table is closed")
        try:
            return run()
        except UsageError:
            raise
        except Exception as e:  # noqa: BLE001 - timeouts, lost workers, remote errors
            self.failed = True
            detail = f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
            raise UsageError(f"the Dask cluster at {self.where} failed while {what}: {detail[:300]}") from None

    def _wait(self, calls: list) -> list:
        return [c.result(timeout=self.call_timeout) for c in calls]

    def _flush(self) -> None:
        """Wait for the adds sent so far (a lookup must see them)."""
        pending, self._pending = self._pending, []
        self._guard("adding keys", lambda: self._wait(pending))

    def _split(self, keys: np.ndarray) -> list[np.ndarray]:
        """The positions of the keys each partition owns, in their order."""
        part = owner(keys, len(self.actors))
        return [np.flatnonzero(part == p) for p in range(len(self.actors))]

    def lookup(self, keys: np.ndarray) -> np.ndarray:
        """State id of each key, -1 where not found (after every add sent before)."""
        keys = np.asarray(keys, np.int64)
        out = np.full(len(keys), -1, np.int32)
        self._flush()
        if not len(keys):
            return out
        where = self._split(keys)

        def ask():
            calls = [(idx, a.lookup(keys[idx])) for idx, a in zip(where, self.actors) if len(idx)]
            return [(idx, ids) for (idx, _), ids in zip(calls, self._wait([c for _, c in calls]))]
        for idx, ids in self._guard("looking keys up", ask):
            out[idx] = ids
        return out

    def add(self, keys: np.ndarray, sids: np.ndarray) -> None:
        """Send each worker its share of the new (sorted, absent) keys; not waited for
        here (see the module's docstring)."""
        keys, sids = np.asarray(keys, np.int64), np.asarray(sids, np.int32)
        where = self._split(keys)

        def send():   # a subsequence of sorted keys is sorted
            return [a.add(keys[idx], sids[idx]) for idx, a in zip(where, self.actors) if len(idx)]
        self._pending += self._guard("adding keys", send)
        self.n += len(keys)

    def __len__(self) -> int:
        return self.n

    def sizes(self) -> list[int]:
        """How many keys each worker holds (in ``workers`` order); after close, how many
        each held when it closed."""
        if self._closed_sizes is not None:
            return list(self._closed_sizes)
        self._flush()
        return self._guard("counting keys", lambda: self._wait([a.size() for a in self.actors]))

    def close(self) -> None:
        """Release every worker's partition. Safe to call twice, and after a failure
        (then nothing more is waited for: the futures are released at once)."""
        if self._closed_sizes is not None:
            return
        try:
            if not self.failed:
                self._flush()
                self._closed_sizes = self._guard("releasing the partitions",
                                                 lambda: self._wait([a.clear() for a in self.actors]))
        except UsageError:
            pass   # a lost worker has lost its partition already
        finally:
            if self._closed_sizes is None:
                self._closed_sizes = [0] * len(self.actors)
            for f in self._futures:
                f.release()
            self.actors, self._futures, self._pending = [], [], []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def explore_partitioned(cfg: Config, bounds: Bounds = Bounds(), symmetry: bool = True,
                        scheduler: str | None = None, client=None, connect_timeout: float | None = None,
                        progress=False, max_states: int = 5_000_000, engine: str = "auto",
                        max_memory: int | None = None) -> Exploration:
    """explore() (gmemlab.explore) with the keys found so far held by the workers of a
    Dask cluster: the scheduler's address (connected within ``connect_timeout``, as
    ``gmemlab sweep --scheduler`` connects), or a ``distributed.Client`` already made.
    The same Exploration as explore(cfg, bounds, symmetry, ...), id for id."""
    from gmemlab.explore.search import search
    from gmemlab.model.vocab import ENGINES
    from gmemlab.sweep import CONNECT_TIMEOUT, dask_client

    if engine not in ENGINES:
        raise UsageError(f"unknown engine {engine!r}; known: {', '.join(ENGINES)}")
    if (scheduler is None) == (client is None):
        raise UsageError("explore_partitioned needs a scheduler address or a client (one of them)")
    timeout = CONNECT_TIMEOUT if connect_timeout is None else connect_timeout
    spec = Spec(cfg, bounds, symmetry=symmetry)   # before connecting: bad bounds fail fast
    own = client is None
    if own:
        client = dask_client(scheduler, timeout, "--scheduler")
    try:
        table = PartitionedTable(client, timeout=timeout)
        try:
            return search(spec, engine="fast" if engine == "auto" else engine, progress=progress,
                          max_states=max_states, table=table, max_memory=max_memory)
        finally:
            table.close()
    finally:
        if own:
            client.close()
