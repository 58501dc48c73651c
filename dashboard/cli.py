"""``t2i-dashboard``: serve the Streamlit dashboard over a runs directory.

The CLI is thin: it checks the arguments, then runs
``python -m streamlit run dashboard/app.py ... -- --runs DIR`` as a child
process and returns its exit code.
"""

from __future__ import annotations

import argparse
import ipaddress
import subprocess
import sys
import threading
import time
import urllib.request
import webbrowser
from pathlib import Path

APP_PATH = Path(__file__).resolve().parent / "app.py"

EXAMPLES = """\
examples:
  t2i-dashboard                          # serve ./runs on http://127.0.0.1:8501
  t2i-dashboard --runs /data/t2i-runs    # another runs directory
  t2i-dashboard --port 8600 --headless   # another port; do not open a browser
  ssh -L 8501:127.0.0.1:8501 gpu-box     # then run t2i-dashboard on gpu-box and
                                         # open http://127.0.0.1:8501 locally

Make a run to look at first:  t2i-bench generate --help   (or: make demo)
"""


def streamlit_command(runs: str | Path, host: str = "127.0.0.1", port: int = 8501) -> list[str]:
    """The argv that serves the dashboard for ``runs`` on ``host:port`` (headless)."""
    return [
        sys.executable, "-m", "streamlit", "run", str(APP_PATH),
        "--server.address", host,
        "--server.port", str(port),
        "--server.headless", "true",
        "--browser.gatherUsageStats", "false",
        "--client.toolbarMode", "minimal",  # no "Deploy" button: this is a local report viewer
        "--", "--runs", str(Path(runs).resolve()),
    ]  # fmt: skip


def _port(text: str) -> int:
    """argparse type: a TCP port number."""
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid port {text!r}") from None
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"port {port} is outside 1-65535")
    return port


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (its --help carries runnable examples)."""
    parser = argparse.ArgumentParser(
        prog="t2i-dashboard",
        description="Browse t2i-audit run directories (images, manifests) in a local web app.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--runs", default="runs", metavar="DIR", help="runs directory to browse (default: ./runs)")
    parser.add_argument("--port", type=_port, default=8501, help="port to serve on (default: 8501)")
    parser.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to bind (default: 127.0.0.1, this machine only; use an SSH tunnel to view it remotely)",
    )
    parser.add_argument("--headless", action="store_true", help="do not open a web browser (for servers and CI)")
    return parser


def is_loopback(host: str) -> bool:
    """Whether ``host`` names this machine only (127.0.0.0/8, ::1, localhost)."""
    if host.strip().lower() in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host.strip().strip("[]")).is_loopback
    except ValueError:  # a host name or 0.0.0.0-like wildcard written otherwise: not provably local
        return False


def exposure_warning(host: str, port: int) -> str | None:
    """One line warning that ``host`` is reachable from other machines, or None for a loopback address."""
    if is_loopback(host):
        return None
    return (f"warning: --host {host} is not a loopback address: anyone who can reach this machine on port {port} "
            "can browse the runs (no login); prefer 127.0.0.1 with an SSH tunnel")  # fmt: skip


def _open_browser_when_ready(url: str, timeout: float = 30.0) -> None:
    """Open ``url`` in a browser once the server's health check answers."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url + "/_stcore/health", timeout=2):
                webbrowser.open(url)
                return
        except OSError:
            time.sleep(0.5)


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``t2i-dashboard``; returns the process exit code."""
    args = build_parser().parse_args(argv)
    runs = Path(args.runs)
    if not runs.is_dir():
        what = "is not a directory" if runs.exists() else "does not exist"
        print(
            f"error: runs directory '{runs}' {what}; create a run with 't2i-bench generate ...' or pass --runs",
            file=sys.stderr,
        )
        return 2

    warning = exposure_warning(args.host, args.port)
    if warning:
        print(warning, file=sys.stderr)
    url = f"http://{args.host}:{args.port}"
    print(f"t2i-dashboard: serving {runs.resolve()} on {url} (Ctrl-C to stop)", file=sys.stderr)
    if not args.headless:
        threading.Thread(target=_open_browser_when_ready, args=(url,), daemon=True).start()
    process = subprocess.Popen(streamlit_command(runs, args.host, args.port))
    try:
        return process.wait()
    except KeyboardInterrupt:  # Ctrl-C reaches the child too; let it shut down
        try:
            return process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            return process.wait()


if __name__ == "__main__":
    sys.exit(main())
