"""Worker processes: results in task order, errors and dead workers reported at once, and a script
without an `if __name__ == "__main__":` guard that starts workers just works (no re-import, no hang)."""

from __future__ import annotations

import operator
import os
import signal
import subprocess
import sys
import textwrap

import pytest
from tok_helpers import REPO, SHAKESPEARE

from tokenizer import TokenizerError
from tokenizer.workers import ordered_map


@pytest.mark.parametrize("workers", [1, 2])
def test_results_come_back_in_task_order(workers):
    assert list(ordered_map(operator.add, range(40), workers, setup=int, setup_args=(5,), in_flight=3)) == \
        [5 + i for i in range(40)]


@pytest.mark.parametrize("workers", [1, 2])
def test_an_error_in_a_task_is_raised_in_the_caller(workers):
    with pytest.raises(ZeroDivisionError):
        list(ordered_map(operator.truediv, [1, 2, 0, 4], workers, setup=int, setup_args=(1,)))


def test_a_worker_that_dies_is_an_error_not_a_hang():
    # each task makes its worker send itself SIGKILL (state: the worker's pid)
    with pytest.raises(TokenizerError, match=r"a tokenizer worker process was killed by signal 9 before finishing its "
                                             r"work \(out of memory, or killed\); free some memory or use fewer processes"):
        list(ordered_map(os.kill, [signal.SIGKILL] * 3, 2, setup=os.getpid))


@pytest.mark.parametrize("bad", [0, -1, 1.5])
def test_process_count_below_one_is_refused(bad):
    with pytest.raises(TokenizerError, match=r"the number of processes must be a whole number >= 1"):
        list(ordered_map(operator.add, [1], bad))


def test_an_unguarded_script_with_threads_trains_and_encodes_in_parallel(tmp_path):
    """A script that starts worker processes at import time, with other threads running (torch imported):
    multiprocessing's forkserver/spawn children would re-run it and wait for ever; ours finish, with the
    same merges and ids as one process."""
    script = tmp_path / "unguarded.py"
    script.write_text(textwrap.dedent(f"""
        import threading
        import torch  # starts threads, so a fork would be unsafe
        from tokenizer import Tokenizer, train_bpe
        from tokenizer.token_file import read_token_file, write_token_file
        stop = threading.Event()
        threading.Thread(target=stop.wait, daemon=True).start()
        _, merges2 = train_bpe({str(SHAKESPEARE)!r}, 400, ["<|endoftext|>"], num_processes=2)
        vocab, merges1 = train_bpe({str(SHAKESPEARE)!r}, 400, ["<|endoftext|>"], num_processes=1)
        tok = Tokenizer(vocab, merges1, ["<|endoftext|>"])
        import tokenizer.token_file as tf
        tf._BLOCK = 100_000
        write_token_file(tok, {str(SHAKESPEARE)!r}, {str(tmp_path / "two.bin")!r}, processes=2)
        write_token_file(tok, {str(SHAKESPEARE)!r}, {str(tmp_path / "one.bin")!r}, processes=1)
        same_ids = read_token_file({str(tmp_path / "two.bin")!r}).tolist() == read_token_file({str(tmp_path / "one.bin")!r}).tolist()
        print("RESULT", merges1 == merges2, same_ids)
    """))
    env = dict(os.environ, PYTHONPATH=str(REPO))
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=180, env=env)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.count("RESULT") == 1 and "RESULT True True" in result.stdout
