"""Worker processes for counting and encoding: fresh interpreters fed over pipes.

A worker is a new `python` process running `serve()`, not a `multiprocessing` child:

* it never imports the caller's `__main__`, so a script that calls `train_bpe` or
  `prepare_token_cache` at top level (no `if __name__ == "__main__":` guard) just works,
  where a `multiprocessing` pool would re-run the script in each child and wait for ever;
* nothing is forked from a threaded process (a fork inherits locks that torch's or a
  logger's threads hold, and can deadlock);
* a worker imports only `tokenizer` (not torch, not the caller's modules), so it starts in
  a fraction of a second with a small memory footprint;
* a worker that dies (killed, out of memory) is reported at once as a `TokenizerError`,
  never silently replaced while the caller waits; workers exit when the caller does,
  since their stdin closes.

Protocol: length-prefixed pickles. The parent first sends `(setup, setup_args, work)`; the
worker builds `state = setup(*setup_args)` and then answers each task `t` with
`("ok", work(state, t))` or `("error", exception)`. Running the same `setup` and `work` in
this process (`num_workers == 1`) gives the same results, without any process.
"""

from __future__ import annotations

import collections
import os
import pickle
import queue
import selectors
import signal
import struct
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any, BinaryIO, Callable, Iterable, Iterator

from .errors import TokenizerError

_HEADER = struct.Struct("<Q")
_PACKAGE_ROOT = str(Path(__file__).resolve().parents[1])  # the folder holding `tokenizer/`
_SERVE = f"import sys; sys.path.insert(0, {_PACKAGE_ROOT!r}); from tokenizer.workers import serve; serve()"


def available_cores() -> int:
    """CPU cores this process may run on (its affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def check_num_processes(num_processes: int) -> int:
    """`num_processes` as an int; TokenizerError when it is below 1."""
    if isinstance(num_processes, bool) or not isinstance(num_processes, int) or num_processes < 1:
        raise TokenizerError(f"the number of processes must be a whole number >= 1 (got {num_processes!r}); "
                             "pass 1 for no worker processes or the number of cores to use.")
    return num_processes


def ordered_map(work: Callable[[Any, Any], Any], tasks: Iterable[Any], num_workers: int,
                setup: Callable[..., Any] | None = None, setup_args: tuple = (),
                in_flight: int | None = None, here: bool = False) -> Iterator[Any]:
    """`work(state, task)` for each task, in task order, with `state = setup(*setup_args)`.

    With `num_workers == 1` everything runs in this process. Otherwise `num_workers` worker
    processes share the tasks; at most `in_flight` tasks (default `2 * num_workers`) are
    sent or waiting to be yielded at any time, so memory stays bounded however many
    tasks there are. `work`, `setup`, tasks and results must pickle (module-level
    functions, plain data). An exception raised by `work` is raised here.

    With `here`, this process is one of the `num_workers`: it starts `num_workers - 1` worker
    processes and works on tasks itself, from the first one (while the others start) to the
    last, whenever every worker has its next task queued. One process fewer to start and to
    warm up is what makes two processes pay off on inputs of a few tens of MB.
    """
    check_num_processes(num_workers)
    setup = setup or _no_state
    if num_workers == 1:
        state = setup(*setup_args)
        for task in tasks:
            yield work(state, task)
        return
    count = num_workers - 1 if here else num_workers
    with _Workers(count, (setup, setup_args, work)) as workers:
        local = (work, setup(*setup_args)) if here else None
        yield from workers.ordered(iter(tasks), in_flight or 2 * num_workers, local)


class _Workers:
    """Worker processes, each fed by a thread of this process so that it always has its next task queued
    (see the module docstring)."""

    #: Tasks sent to a worker and not answered yet: the one it works on, and the next.
    depth = 2

    def __init__(self, num_workers: int, setup_message: tuple) -> None:
        self.procs: list[subprocess.Popen] = []
        self._inboxes: list[queue.Queue] = []
        self._feeders: list[threading.Thread] = []
        message = pickle.dumps(setup_message, protocol=pickle.HIGHEST_PROTOCOL)
        try:
            for _ in range(num_workers):
                proc = subprocess.Popen([sys.executable, "-c", _SERVE], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
                self.procs.append(proc)
                inbox: queue.Queue = queue.Queue()
                feeder = threading.Thread(target=_feed, args=(proc, inbox), name="tokenizer-worker-feeder", daemon=True)
                feeder.start()
                self._inboxes.append(inbox)
                self._feeders.append(feeder)
                inbox.put(message)
        except BaseException:
            self.close()
            raise

    def __enter__(self) -> "_Workers":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def ordered(self, tasks: Iterator[Any], in_flight: int, local: tuple | None = None) -> Iterator[Any]:
        """Results of `tasks` in order; with `local = (work, state)` this process works on tasks too, whenever
        every worker has `depth` tasks in hand."""
        waiting: dict[int, collections.deque] = {i: collections.deque() for i in range(len(self.procs))}
        by_fd = {proc.stdout.fileno(): i for i, proc in enumerate(self.procs)}
        done: dict[int, Any] = {}  # index -> result, until it can be yielded in order
        sent = yielded = 0
        exhausted = False
        with selectors.DefaultSelector() as selector:
            for proc in self.procs:
                selector.register(proc.stdout, selectors.EVENT_READ)
            while True:
                self._collect(selector, by_fd, waiting, done, timeout=0)
                while not exhausted and sent - yielded < in_flight:
                    worker = min(waiting, key=lambda i: len(waiting[i]))
                    if len(waiting[worker]) >= self.depth:
                        break
                    task = next(tasks, _END)
                    if task is _END:
                        exhausted = True
                        break
                    self._inboxes[worker].put(pickle.dumps(task, protocol=pickle.HIGHEST_PROTOCOL))
                    waiting[worker].append(sent)
                    sent += 1
                if yielded in done:
                    yield done.pop(yielded)
                    yielded += 1
                    continue
                if local is not None and not exhausted and sent - yielded < in_flight:
                    task = next(tasks, _END)
                    if task is _END:
                        exhausted = True
                    else:
                        done[sent] = local[0](local[1], task)
                        sent += 1
                    continue
                if not any(waiting.values()):
                    return
                self._collect(selector, by_fd, waiting, done, timeout=None)

    def _collect(self, selector: selectors.BaseSelector, by_fd: dict[int, int], waiting: dict[int, Any],
                 done: dict[int, Any], timeout: float | None) -> None:
        """Read the results that are ready (waiting for one when `timeout` is None); a worker answers its tasks
        in the order it got them."""
        for key, _ in selector.select(timeout):
            worker = by_fd[key.fd]
            if not waiting[worker]:
                raise TokenizerError(_died(self.procs[worker]))  # end of file from an idle worker: it died
            done[waiting[worker].popleft()] = _receive(self.procs[worker])

    def close(self) -> None:
        """Stop every worker (closing its stdin ends it; a worker still busy is killed)."""
        for inbox in self._inboxes:
            inbox.put(None)
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
        for feeder in self._feeders:
            feeder.join()
        for proc in self.procs:
            for stream in (proc.stdin, proc.stdout):
                try:
                    stream.close()
                except OSError:
                    pass
            proc.wait()
        self.procs, self._inboxes, self._feeders = [], [], []


def _feed(proc: subprocess.Popen, inbox: queue.Queue) -> None:
    """A feeder thread: write each message of `inbox` to the worker until None (or the worker is gone, which
    the reader sees as the end of its output)."""
    while (payload := inbox.get()) is not None:
        try:
            proc.stdin.write(_HEADER.pack(len(payload)))
            proc.stdin.write(payload)
            proc.stdin.flush()
        except (OSError, ValueError):
            return


_END = object()


def _no_state() -> None:
    return None


def _receive(proc: subprocess.Popen) -> Any:
    # unbuffered: a buffered read could take in the next message too, which `select` would then not report
    payload = _read_message(proc.stdout.raw)
    if payload is None:
        raise TokenizerError(_died(proc))
    status, value = pickle.loads(payload)
    if status == "error":
        raise value
    return value


def _died(proc: subprocess.Popen) -> str:
    try:
        code = proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        code = None
    how = f"was killed by signal {-code}" if code is not None and code < 0 else f"ended with exit code {code}"
    return (f"a tokenizer worker process {how} before finishing its work (out of memory, or killed); "
            "free some memory or use fewer processes (--data.num_proc / --processes) and run again.")


def _read_message(stream: BinaryIO) -> bytes | None:
    header = _read_exactly(stream, _HEADER.size)
    if header is None:
        return None
    return _read_exactly(stream, _HEADER.unpack(header)[0])


def _read_exactly(stream: BinaryIO, n: int) -> bytes | None:
    chunks, left = [], n
    while left:
        chunk = stream.read(left)
        if not chunk:
            return None
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def serve() -> None:
    """The worker's main loop (run by `python -c`): set up, then answer tasks until stdin closes."""
    # Ctrl-C and SIGTERM (sent to the whole process group) are the parent's to handle: it stops us by closing
    # our stdin, or kills us; a parent that dies closes it too.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    inbox = os.fdopen(os.dup(0), "rb")
    outbox = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # anything printed by mistake goes to stderr, never into the protocol
    message = _read_message(inbox)
    if message is None:
        return
    setup, setup_args, work = pickle.loads(message)
    state = setup(*setup_args)
    while (message := _read_message(inbox)) is not None:
        try:
            reply = ("ok", work(state, pickle.loads(message)))
        except Exception as e:  # sent back and raised in the parent
            reply = ("error", e)
        try:
            payload = pickle.dumps(reply, protocol=pickle.HIGHEST_PROTOCOL)
        except Exception:
            payload = pickle.dumps(("error", TokenizerError(f"a worker failed: {reply[1]!r}")))
        try:
            outbox.write(_HEADER.pack(len(payload)))
            outbox.write(payload)
            outbox.flush()
        except (BrokenPipeError, OSError):  # the parent is gone (stopped or killed): nobody waits for the reply
            os._exit(0)
