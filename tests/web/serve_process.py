"""The real `sessionhost serve` as a child process, and a small REST client,
for the Python end-to-end tests in tests/web/ (standard library only)."""

import json
import os
import select
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request


def fail(msg):
    """Ends the test: prints why and exits 1."""
    print(f"FAIL: {msg}", flush=True)
    sys.exit(1)


def wait_until(what, predicate, timeout, interval=0.1):
    """Polls `predicate` until it returns something truthy, for at most
    `timeout` seconds; fails the test naming `what` otherwise."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    fail(f"{what}: not within {timeout} s (last: {last!r})")


class ServeProcess:
    """Starts `sessionhost serve --listen=... --data-dir=DIR [extra]`, reads
    the `listening on http://HOST:PORT` line (bounded), then keeps draining
    its output so the child never blocks on a full pipe."""

    def __init__(self, exe, data_dir, listen="127.0.0.1:0", extra=(),
                 start_timeout=30):
        self.proc = subprocess.Popen(
            [exe, "serve", f"--listen={listen}", f"--data-dir={data_dir}",
             *extra],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self.output = []
        first = self._read_line(start_timeout)
        prefix = "listening on http://"
        if not first.startswith(prefix):
            self.kill()
            raise RuntimeError(f"sessionhost serve printed {first!r} first")
        self.address = first[len(prefix):].strip()
        self.base = f"http://{self.address}"
        self.port = int(self.address.rsplit(":", 1)[1])
        self._drain = threading.Thread(target=self._drain_output, daemon=True)
        self._drain.start()

    def _read_line(self, timeout):
        deadline = time.monotonic() + timeout
        line = b""
        fd = self.proc.stdout.fileno()
        while not line.endswith(b"\n"):
            left = deadline - time.monotonic()
            if left <= 0:
                self.kill()
                raise RuntimeError("sessionhost serve printed no first line "
                                   f"within {timeout} s")
            ready, _, _ = select.select([fd], [], [], left)
            if ready:
                chunk = os.read(fd, 1)
                if not chunk:
                    raise RuntimeError("sessionhost serve exited with "
                                       f"{self.proc.wait(5)} before listening")
                line += chunk
        return line.decode()

    def _drain_output(self):
        for line in self.proc.stdout:
            self.output.append(line.decode(errors="replace"))

    def stop(self, timeout=20):
        """SIGTERM, then the exit code (it must come within `timeout`)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise RuntimeError(f"sessionhost serve did not stop within "
                               f"{timeout} s after SIGTERM")

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    # -- REST -----------------------------------------------------------------

    def request(self, method, path, body=None, token=None, timeout=10):
        """Returns (status, headers, parsed JSON or text)."""
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.base + path, data=data,
                                     method=method)
        if body is not None:
            req.add_header("Content-Type", "application/json")
        if token:
            req.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(req, timeout=timeout) as res:
                status, headers, raw = res.status, res.headers, res.read()
        except urllib.error.HTTPError as err:
            status, headers, raw = err.code, err.headers, err.read()
        text = raw.decode()
        if headers.get_content_type() == "application/json":
            return status, headers, json.loads(text)
        return status, headers, text

    def call(self, method, path, body=None, expect=200, token=None):
        """A REST call that must answer `expect`; returns the JSON."""
        status, _, answer = self.request(method, path, body, token)
        if status != expect:
            raise AssertionError(f"{method} {path}: {status} {answer}, "
                                 f"expected {expect}")
        return answer
