"""The one exception type for bad user input, and the CLI wrapper that turns it into a
one-line message and a non-zero exit; Ctrl-C and SIGTERM (what a batch scheduler sends)
stop a run the same way."""
import signal
import sys

_stopped_by = []  # the signals that asked this process to stop


class UserError(Exception):
    """Bad input from the user: a missing file, an unknown setting, a wrong type.

    The message says what is wrong and what to do about it.
    """


def stop_requested():
    """True once Ctrl-C or SIGTERM arrived, even where a library swallowed the exception
    it raised (h5py's callbacks do): writers check it before publishing a file."""
    return bool(_stopped_by)


def _on_signal(number, frame):
    _stopped_by.append(number)
    raise KeyboardInterrupt


def run_cli(main):
    """Run ``main(sys.argv[1:])``; a UserError becomes ``error: ...`` on stderr and exit 2;
    Ctrl-C exits 130 and SIGTERM 143, leaving no half-written output."""
    sys.stdout.reconfigure(line_buffering=True)  # progress lines show up when piped to a file
    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)
    try:
        main(sys.argv[1:])
        if stop_requested():
            raise KeyboardInterrupt
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        terminated = signal.SIGTERM in _stopped_by
        print("terminated" if terminated else "interrupted", file=sys.stderr)
        sys.exit(143 if terminated else 130)
    finally:
        import torch.distributed as dist
        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()
