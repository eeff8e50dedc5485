"""The one exception type for bad user input, and the CLI wrapper that turns it
into a one-line message and a non-zero exit."""
import sys


class UserError(Exception):
    """Bad input from the user: a missing file, an unknown setting, a wrong type.

    The message says what is wrong and what to do about it.
    """


def run_cli(main):
    """Run ``main(sys.argv[1:])``; a UserError becomes ``error: ...`` on stderr and exit 2."""
    sys.stdout.reconfigure(line_buffering=True)  # progress lines show up when piped to a file
    try:
        main(sys.argv[1:])
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    finally:
        import torch.distributed as dist
        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()
