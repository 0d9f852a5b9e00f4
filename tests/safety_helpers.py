"""Shared by the safety tests: run many real commands at once, read their one-line errors and
the files they left."""
import os
import time

import training_helpers as helpers

PARALLEL_RUNS = 4


def listing(directory):
    """{relative path: bytes} of every file under `directory` (links not followed)."""
    found = {}
    for parent, _, names in os.walk(directory):
        for name in names:
            full = os.path.join(parent, name)
            with open(full, "rb") as handle:
                found[os.path.relpath(full, directory)] = handle.read().hex()
    return found


def run_all(commands, log_dir):
    """Runs {name: argv} PARALLEL_RUNS at a time; returns {name: (exit code, output)}."""
    pending, running, results = list(commands.items()), {}, {}
    while pending or running:
        while pending and len(running) < PARALLEL_RUNS:
            name, command = pending.pop(0)
            log = open(os.path.join(log_dir, f"{name}.log"), "w")
            running[name] = (helpers.start(command, stdout=log), log, time.time())
        for name, (process, log, started) in list(running.items()):
            if process.poll() is None and time.time() - started < 600:
                continue
            if process.poll() is None:
                process.kill()
            process.wait()
            log.close()
            with open(log.name) as handle:
                results[name] = (process.returncode, handle.read())
            del running[name]
        time.sleep(0.2)
    return results


def failure(runs, case, program):
    """The one error line of a failed run (exit code 1, no traceback)."""
    code, output = runs["results"][case]
    assert code == 1, output[-3000:]
    assert "Traceback" not in output, output[-3000:]
    lines = [line for line in output.splitlines() if line.startswith(f"{program}: error: ")]
    assert len(lines) == 1, output[-3000:]
    return lines[0]
