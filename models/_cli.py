"""Shared command-line plumbing for the scripts in models/.

Contract: every script reports a failure as ONE line on stderr,
``<prog>: error: <message>``, and exits non-zero (2 for bad arguments, 1 for
anything that went wrong while running). Nothing here knows about torch.
"""

import argparse
import sys

EXIT_FAILURE = 1
EXIT_USAGE = 2


class UserError(Exception):
    """A failure caused by the user's input or environment (bad file, no network).

    Raised by the scripts; `run_main` prints its message as one line.
    """


class ArgumentParser(argparse.ArgumentParser):
    """argparse.ArgumentParser whose errors are one line on stderr (no usage dump)."""

    def error(self, message):
        sys.stderr.write(f"{self.prog}: error: {message}\n")
        sys.exit(EXIT_USAGE)


def run_main(main, prog):
    """Call ``main()`` and turn expected exceptions into a one-line error and exit 1.

    UserError, OSError, ValueError and RuntimeError (torch's error type, e.g.
    an unreadable TorchScript file) are reported by the first line of their
    message, without a traceback; any other exception is a bug and
    propagates with its traceback.
    """
    try:
        return main()
    except (UserError, OSError, ValueError, RuntimeError) as error:
        lines = [line.strip() for line in str(error).splitlines() if line.strip()]
        message = lines[0] if lines else type(error).__name__
        sys.stderr.write(f"{prog}: error: {message}\n")
        return EXIT_FAILURE
