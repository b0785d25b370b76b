#!/usr/bin/env python3
"""`sessionhost serve --demo`: three echo sessions (demo-1..3) that receive
messages through the normal (durable) path; a restart on the same data dir
reuses them instead of piling up new ones; one terminated is recreated; the
server still stops cleanly (exit 0) on SIGTERM.

Usage: demo_test.py SESSIONHOST_EXE (standard library only)."""

import os
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import serve_process  # noqa: E402
from serve_process import ServeProcess, fail  # noqa: E402

WAIT = 30  # seconds: the bound of every wait
ROLES = ["demo-1", "demo-2", "demo-3"]


def wait_until(what, predicate, timeout=WAIT):
    return serve_process.wait_until(what, predicate, timeout, 0.2)


def demo_sessions(srv, state="ACTIVE"):
    """role → session, for the live demo sessions; fails on duplicates."""
    found = {}
    for s in srv.call("GET", f"/v1/sessions?state={state}&limit=1000")["sessions"]:
        if s["role"] in ROLES:
            if s["role"] in found:
                fail(f"two live sessions with role {s['role']}")
            found[s["role"]] = s
    return found


def all_busy(srv, more_than):
    """The demo sessions when each has more than `more_than[role]` messages."""
    found = demo_sessions(srv)
    if sorted(found) != ROLES:
        return None
    if any(found[r]["message_count"] <= more_than.get(r, 0) for r in ROLES):
        return None
    return found


def stop(srv):
    code = srv.stop()
    if code != 0:
        fail(f"sessionhost serve --demo exited with {code} on SIGTERM")


def main():
    if len(sys.argv) != 2:
        fail("usage: demo_test.py SESSIONHOST_EXE")
    exe = sys.argv[1]
    data_dir = tempfile.mkdtemp(prefix="sessionhost-demo-")
    srv = None
    try:
        srv = ServeProcess(exe, data_dir, extra=["--demo"])
        first = wait_until("three busy demo sessions", lambda: all_busy(srv, {}))
        for role, s in first.items():
            if s["type"] != "echo" or s["metadata"].get("demo") != "true":
                fail(f"{role} is {s}")
            events = srv.call("GET", f"/v1/sessions/{s['id']}/events")["events"]
            texts = [e["data"].get("text") for e in events
                     if e["type"] == "block:complete"]
            if not any(t and t.startswith(f"{role} says hello") for t in texts):
                fail(f"{role} has no echoed demo message: {events}")
        stop(srv)

        # Restarted on the same data: the same three sessions, still busy.
        srv = ServeProcess(exe, data_dir, extra=["--demo"])
        counts = {r: s["message_count"] for r, s in demo_sessions(srv).items()}
        again = wait_until("the same demo sessions busy again",
                           lambda: all_busy(srv, counts))
        if {r: s["id"] for r, s in again.items()} != \
                {r: s["id"] for r, s in first.items()}:
            fail(f"a restart made new demo sessions: {again} vs {first}")

        # One terminated comes back (as a new session) on a later tick.
        old = again["demo-2"]["id"]
        srv.call("DELETE", f"/v1/sessions/{old}")
        back = wait_until("demo-2 recreated", lambda: (
            lambda s: s if s and s["id"] != old else None)(
                demo_sessions(srv).get("demo-2")))
        wait_until("the new demo-2 gets messages", lambda: srv.call(
            "GET", f"/v1/sessions/{back['id']}")["message_count"] > 0)
        stop(srv)
        print("PASS", flush=True)
        return 0
    finally:
        if srv is not None:
            srv.kill()
        shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
