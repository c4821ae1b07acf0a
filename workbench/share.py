"""Share the workbench on a network: `python -m workbench.share [--port 8501] [--address 0.0.0.0]`.

Makes the owner's and the viewers' tokens (unless set: RLHF_WORKBENCH_TOKEN, RLHF_WORKBENCH_VIEWER_TOKEN), prints a
link with each, and starts the app listening beyond this machine. Give the viewer link to an audience: it shows live
runs and results and has no Start, Stop, Delete or Export. workbench/access.py says what the tokens allow.
"""

from __future__ import annotations

import argparse
import os
import secrets
import socket
import sys

from workbench.access import (ANY_PATH_ENV, REMOTE_CODE_ENV, REPO, TOKEN_ENV, VIEWER_TOKEN_ENV, any_path_allowed,
                              remote_code_allowed)


def host_name() -> str:
    """This machine's address as others on the network reach it (the one the default route leaves from)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))  # no packet is sent: this only picks the outgoing interface
            return probe.getsockname()[0]
        except OSError:
            return socket.gethostname()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m workbench.share", description=__doc__.split("\n\n")[1])
    parser.add_argument("--port", type=int, default=8501)
    parser.add_argument("--address", default="0.0.0.0", help="the interface to listen on (default: all)")
    args = parser.parse_args(argv)
    env = os.environ
    for name in (TOKEN_ENV, VIEWER_TOKEN_ENV):
        env[name] = env.get(name) or secrets.token_urlsafe(18)
    host = host_name() if args.address in ("0.0.0.0", "::") else args.address
    print(f"Owner (everything):      http://{host}:{args.port}/?token={env[TOKEN_ENV]}")
    print(f"Viewers (watch results): http://{host}:{args.port}/?token={env[VIEWER_TOKEN_ENV]}")
    print(f"Remote model code: {'allowed' if remote_code_allowed() else 'off'} ({REMOTE_CODE_ENV}); "
          f"pages read {'any path' if any_path_allowed() else 'sample_data/ and the runs folder'} "
          f"({ANY_PATH_ENV}).", flush=True)
    os.chdir(REPO)
    os.execve(sys.executable, [sys.executable, "-m", "streamlit", "run", "app.py", "--server.address", args.address,
                               "--server.port", str(args.port), "--browser.serverAddress", host], env)


if __name__ == "__main__":
    main()
