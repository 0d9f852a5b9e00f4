"""Claiming a train dir for one training run: an exclusive lock, the temporary files an earlier
killed run left behind, and leaving nothing when the run ends before its first step.

Two train.py runs on one --train_dir would overwrite each other's checkpoints, so the run holds
an exclusive lock (`fcntl.flock` on `train_dir/.train.lock`, which holds the holder's pid and host)
from before it reads its checkpoints until it ends. The kernel releases the lock of a process
that dies, even by kill -9: a lock file nobody holds is stale, and the next run takes it over with
a warning. Train dirs on object stores (gs://) have no locks: there the run goes on unlocked.

A run killed while writing leaves temporaries: TensorFlow's `ckpt-<N>_temp/` directories,
`*.tempstate<N>` bundle files and `checkpoint.tmp<hex>` state files, and the project's own
`.<name>.tmp-<pid>-<hex>` files (yt8m.core.files). Under the lock nothing else writes the first
ones, so they are removed at start; the project's own are removed only when the pid in their name
is not running here (eval.py may be writing into `train_dir/eval` meanwhile).
"""
import datetime
import errno
import fcntl
import json
import os
import re
import socket

from absl import logging

import yt8m  # noqa: F401
import tensorflow as tf

from yt8m.core import errors
from yt8m.core import files

LOCK_FILE = ".train.lock"
# The temporaries a killed writer of TensorFlow's checkpoints and state file leaves (those of
# yt8m.core.files name their writer's pid: files.is_stale_temporary).
_TF_TEMPORARY = re.compile(r"^(ckpt-\d+_temp|.*\.tempstate\d+|checkpoint\.tmp[0-9a-f]+)$")
_SUBDIRS_WITH_TEMPORARIES = ("", "eval")


class TrainDirInUseError(errors.UserError, RuntimeError):
    """Another live process holds the train dir's lock."""


def remove_stale_temporaries(train_dir):
    """Removes what killed writers left in `train_dir` (and its eval/); returns the names."""
    removed = []
    for subdir in _SUBDIRS_WITH_TEMPORARIES:
        directory = os.path.join(train_dir, subdir)
        if not tf.io.gfile.isdir(directory):
            continue
        for name in sorted(tf.io.gfile.listdir(directory)):
            name = name.rstrip("/")
            stale = ((not subdir and _TF_TEMPORARY.match(name))
                     or (files.is_local(train_dir) and files.is_stale_temporary(name)))
            if stale:
                files.remove(os.path.join(directory, name))
                removed.append(os.path.join(subdir, name))
    if removed:
        logging.warning("Removed %d temporary file(s) an interrupted run left in %s: %s",
                        len(removed), train_dir, ", ".join(removed))
    return removed


def _holder(handle):
    handle.seek(0)
    try:
        return json.loads(handle.read() or "{}")
    except ValueError:
        return {}


def _describe(holder):
    return (f"process {holder.get('pid', '?')} on host {holder.get('host', '?')} (started "
            f"{holder.get('started', '?')})")


class TrainDirGuard:
    """The lock of a train dir, taken by `acquire()` and given back by `release()`.

    `acquire` creates the train dir if needed (the lock lives in it); `release(keep=False)`
    removes the lock file and a train dir this run created and left empty, so a run that fails
    before its first step leaves nothing behind.
    """

    def __init__(self, train_dir):
        self.train_dir = train_dir
        self._handle = None
        self._created = False

    @property
    def lock_path(self):
        return os.path.join(self.train_dir, LOCK_FILE)

    def acquire(self):
        train_dir = self.train_dir
        if tf.io.gfile.exists(train_dir) and not tf.io.gfile.isdir(train_dir):
            raise errors.OutputWriteError(
                f"--train_dir={train_dir!r} is a file, not a directory: give a directory for "
                "checkpoints")
        if not files.is_local(train_dir):
            logging.info("%s is not on a local file system: no lock against a second run.",
                         train_dir)
            return self
        self._created = not os.path.isdir(train_dir)
        with files.refused_write_as_user_error(self.lock_path):
            os.makedirs(train_dir, exist_ok=True)
            while self._handle is None:
                handle = open(self.lock_path, "a+")
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except OSError as error:
                    holder = _holder(handle)
                    handle.close()
                    if error.errno not in (errno.EAGAIN, errno.EACCES):
                        raise
                    self._remove_created_dir()
                    raise TrainDirInUseError(
                        f"--train_dir={train_dir!r} is in use by {_describe(holder)}, which "
                        f"holds {self.lock_path}: two runs would overwrite each other's "
                        "checkpoints; wait for it to end or choose another --train_dir"
                    ) from None
                # The file may have been removed (by its releasing holder) between open and
                # lock: then the lock guards nothing; take the new file.
                try:
                    current = os.stat(self.lock_path)
                except FileNotFoundError:
                    current = None
                opened = os.fstat(handle.fileno())
                if current is None or (current.st_ino, current.st_dev) != (opened.st_ino,
                                                                             opened.st_dev):
                    handle.close()
                    continue
                self._handle = handle
            previous = _holder(self._handle)
            if previous:
                logging.warning("%s: took over the stale lock of %s, which no longer runs "
                                "(killed?)", self.lock_path, _describe(previous))
            self._handle.seek(0)
            self._handle.truncate()
            self._handle.write(json.dumps({
                "pid": os.getpid(), "host": socket.gethostname(),
                "started": datetime.datetime.now().isoformat(timespec="seconds")}))
            self._handle.flush()
        return self

    def release(self, keep=True):
        """Gives the lock back. keep=False: also removes the train dir if this run created it
        and nothing but the lock is in it."""
        if self._handle is None:
            return
        try:
            os.remove(self.lock_path)
        except FileNotFoundError:
            pass
        self._handle.close()  # closing releases the lock
        self._handle = None
        if not keep:
            self._remove_created_dir()

    def _remove_created_dir(self):
        if self._created:
            try:
                os.rmdir(self.train_dir)  # only when empty
            except OSError:
                pass
            self._created = False
