"""What the command-line tools share: bad input ends with one clear line on stderr and exit
code 1; a bug keeps its traceback."""
import contextlib
import sys
import traceback

from absl import app
from absl import logging

import yt8m  # noqa: F401

# Errors that describe bad input (flags, files, train dirs) rather than a bug: the message is
# enough. Anything else keeps its full traceback.
USER_ERRORS = (ValueError, FileNotFoundError, KeyError)


@contextlib.contextmanager
def exit_on_user_error(program, more_user_errors=()):
    """Turns a user error raised inside into `<program>: error: <message>` and exit code 1."""
    try:
        yield
    except USER_ERRORS + tuple(more_user_errors) as error:
        if logging.get_verbosity() >= logging.DEBUG:
            traceback.print_exc()
        message = error.args[0] if isinstance(error, KeyError) and error.args else error
        print(f"{program}: error: {message}", file=sys.stderr, flush=True)
        sys.exit(1)


def run(main, program, more_user_errors=()):
    """app.run(main) with user errors turned into one line (exit_on_user_error)."""

    def guarded_main(argv):
        if len(argv) > 1:
            raise app.UsageError(f"unexpected positional arguments: {' '.join(argv[1:])}")
        with exit_on_user_error(program, more_user_errors):
            return main()

    app.run(guarded_main)
