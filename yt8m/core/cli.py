"""What the command-line tools share: bad input ends with one clear line on stderr and exit
code 1; a bug keeps its traceback.

Bad input is a `yt8m.core.errors.UserError` (raised where the project checks its input), a
TensorFlow error of a failed input check or record parse (`errors.input_error_message`), or one of
the exception types a tool adds (`more_user_errors`). Everything else propagates with its
traceback. `--verbosity=1` (absl's debug level) prints the traceback of a user error too.
"""
import contextlib
import sys
import traceback

from absl import app
from absl import logging

import yt8m  # noqa: F401
from yt8m.core import errors


def user_error_message(error, more_user_errors=()):
    """The one-line message of `error` if it is bad input, else None (a bug)."""
    if isinstance(error, (errors.UserError,) + tuple(more_user_errors)):
        return str(error)
    return errors.input_error_message(error)


@contextlib.contextmanager
def exit_on_user_error(program, more_user_errors=()):
    """Turns bad input raised inside into `<program>: error: <message>` and exit code 1."""
    try:
        yield
    except Exception as error:  # noqa: BLE001 (re-raised unless it is bad input)
        message = user_error_message(error, more_user_errors)
        if message is None:
            raise
        if logging.get_verbosity() >= logging.DEBUG:
            traceback.print_exc()
        print(f"{program}: error: {message}", file=sys.stderr, flush=True)
        sys.exit(1)


def warn(program, message):
    """`<program>: warning: <message>` on stderr (a questionable input the tool goes on with)."""
    print(f"{program}: warning: {message}", file=sys.stderr, flush=True)


def run(main, program, more_user_errors=()):
    """app.run(main) with user errors turned into one line (exit_on_user_error)."""

    def guarded_main(argv):
        if len(argv) > 1:
            raise app.UsageError(f"unexpected positional arguments: {' '.join(argv[1:])}")
        with exit_on_user_error(program, more_user_errors):
            return main()

    app.run(guarded_main)
