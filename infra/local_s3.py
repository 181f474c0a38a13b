#!/usr/bin/env python
"""A real S3-compatible server on loopback (moto's server) for development and tests.

    python infra/local_s3.py start [--port 9000] [--bucket mujo]   # background; prints the variables to export
    python infra/local_s3.py stop
    python infra/local_s3.py env                                    # print the variables again

moto accepts any credentials; the ones printed are placeholders for a local server, not secrets. Data lives in the
server's memory and is gone when it stops. The tests start their own instance (``LocalS3``) on a free port.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

STATE = Path(__file__).resolve().parent.parent / ".s3"
LOCAL_ENV = {"AWS_ACCESS_KEY_ID": "local-dev", "AWS_SECRET_ACCESS_KEY": "local-dev-placeholder",
             "AWS_DEFAULT_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LocalS3:
    """Start/stop a moto S3 server process on 127.0.0.1; ``env`` holds the variables clients need."""

    def __init__(self, port: int | None = None, host: str = "127.0.0.1") -> None:
        self.host, self.port = host, port or free_port()
        self.proc: subprocess.Popen | None = None

    @property
    def endpoint(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def env(self) -> dict[str, str]:
        return {**LOCAL_ENV, "AWS_ENDPOINT_URL": self.endpoint}

    def start(self, timeout: float = 30.0, log_path: str | os.PathLike | None = None) -> "LocalS3":
        out = open(log_path, "ab") if log_path else subprocess.DEVNULL
        self.proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", self.host, "-p", str(self.port)],
                                     stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"moto server exited with code {self.proc.returncode} (port {self.port} busy?)")
            try:
                urllib.request.urlopen(self.endpoint + "/moto-api/", timeout=1)
                return self
            except OSError:
                time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"moto server did not answer on {self.endpoint} within {timeout} s")

    def create_bucket(self, name: str) -> None:
        import boto3

        boto3.client("s3", endpoint_url=self.endpoint, aws_access_key_id=LOCAL_ENV["AWS_ACCESS_KEY_ID"],
                     aws_secret_access_key=LOCAL_ENV["AWS_SECRET_ACCESS_KEY"],
                     region_name=LOCAL_ENV["AWS_DEFAULT_REGION"]).create_bucket(Bucket=name)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.proc = None


def _print_env(port: int) -> None:
    for k, v in {**LOCAL_ENV, "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}"}.items():
        print(f"export {k}={v}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", choices=["start", "stop", "env"])
    parser.add_argument("--port", type=int, default=9000)
    parser.add_argument("--bucket", default="mujo")
    args = parser.parse_args()
    STATE.mkdir(exist_ok=True)
    pid_file, port_file = STATE / "server.pid", STATE / "server.port"
    if args.action == "start":
        server = LocalS3(args.port).start(log_path=STATE / "server.log")
        server.create_bucket(args.bucket)
        pid_file.write_text(str(server.proc.pid))
        port_file.write_text(str(server.port))
        print(f"# local S3 on {server.endpoint}, bucket s3://{args.bucket}; use it with:", file=sys.stderr)
        _print_env(server.port)
    elif args.action == "stop":
        if pid_file.exists():
            try:
                os.kill(int(pid_file.read_text()), signal.SIGTERM)
            except ProcessLookupError:
                pass
            pid_file.unlink()
        print("stopped", file=sys.stderr)
    else:
        _print_env(int(port_file.read_text()) if port_file.exists() else args.port)


if __name__ == "__main__":
    main()
