#!/usr/bin/env python3
"""End-to-end test of the dashboard (GET /) in headless Chromium.

Starts the real `sessionhost serve` on 127.0.0.1:0 with a temporary data dir,
opens the dashboard, creates a session through REST and checks that the page
lists it, opens it and checks that the events of messages sent through REST
render live, in order. Then the resume: the server is stopped (SIGTERM: its
WebSockets close with 1001) and started again on the same port and data dir,
more messages are sent, and the page must end with every event of the
session exactly once, seqs 1..N, the same as the store's. Also: the static
files and their 404/405s, the page's own create and terminate, the JS
client's unit test (client_test.js) in the page, and a server with a token
file, whose dashboard takes the token from `/?token=`.

Usage: dashboard_test.py SESSIONHOST_EXE
Exit codes: 0 pass, 1 fail, 77 skipped (only under sanitizers, where
SESSIONHOST_SANITIZED=1 is set: CI installs Chromium for the plain pass).
"""

import os
import shutil
import sys
import tempfile
import time
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import serve_process  # noqa: E402
from serve_process import ServeProcess, fail  # noqa: E402

WAIT = 20  # seconds: the bound of every wait for the page


def wait_until(what, predicate, timeout=WAIT):
    return serve_process.wait_until(what, predicate, timeout, 0.1)


def start_browser():
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError as err:
        fail(f"python3-selenium is missing ({err}); "
             "scripts/install-deps.sh installs it")
    chromium = shutil.which("chromium")
    driver = shutil.which("chromedriver")
    if not chromium or not driver:
        fail("chromium and chromium-driver are missing; "
             "scripts/install-deps.sh installs them")
    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                "--disable-gpu", "--window-size=1400,1000"):
        opts.add_argument(arg)
    browser = webdriver.Chrome(service=Service(executable_path=driver),
                               options=opts)
    browser.set_page_load_timeout(WAIT)
    browser.set_script_timeout(WAIT)
    return browser


def page_seqs(browser):
    return browser.execute_script(
        "return Array.from(document.querySelectorAll('#events tbody tr'))"
        ".map(tr => [Number(tr.dataset.seq), tr.dataset.type]);")


def badge(browser):
    return browser.execute_script(
        "return document.querySelector('#ws-state').textContent;")


def stored_events(srv, sid, token=None):
    events = srv.call("GET", f"/v1/sessions/{sid}/events?from_seq=0",
                      token=token)["events"]
    return [[e["seq"], e["type"]] for e in events]


def expect_page_matches_store(browser, srv, sid, what, token=None):
    """Waits until the page shows exactly the stored events (seq and type,
    in order), then checks they are seqs 1..N without gap or duplicate."""
    deadline = time.monotonic() + WAIT
    while True:
        want = stored_events(srv, sid, token)
        got = page_seqs(browser)
        if got == want:
            break
        if time.monotonic() > deadline:
            fail(f"{what}: the page shows {got}, the store has {want}")
        time.sleep(0.2)
    seqs = [s for s, _ in got]
    if not seqs or seqs != list(range(1, len(seqs) + 1)):
        fail(f"{what}: seqs are {seqs}, not 1..{len(seqs)}")
    return len(seqs)


def check_static_files(srv):
    status, headers, body = srv.request("GET", "/")
    if status != 200 or headers.get_content_type() != "text/html" \
            or "<title>sessionhost</title>" not in body:
        fail(f"GET / answered {status} {headers.get('Content-Type')}")
    for name, ctype in (("sessionhost.js", "text/javascript"),
                        ("dashboard.js", "text/javascript"),
                        ("dashboard.css", "text/css")):
        status, headers, _ = srv.request("GET", f"/web/{name}")
        if status != 200 or headers.get_content_type() != ctype:
            fail(f"GET /web/{name} answered {status} "
                 f"{headers.get('Content-Type')}")
    for path in ("/web/nope.js", "/nope", "/web/"):
        status, _, body = srv.request("GET", path)
        if status != 404 or body.get("error", {}).get("code") != "not_found":
            fail(f"GET {path} answered {status} {body}, not 404 not_found")
    status, _, body = srv.request("POST", "/")
    if status != 405:
        fail(f"POST / answered {status} {body}, not 405")


CLIENT_TEST = """
const [src, done] = arguments;
(async () => {
  const mod = await import('/web/sessionhost.js');
  const url = URL.createObjectURL(new Blob([src], { type: 'text/javascript' }));
  return (await import(url)).run(mod);
})().then(done, (e) => done([`threw: ${e}\n${e.stack}`]));
"""


def run_client_unit_test(browser):
    """tests/web/client_test.js: the client against a scripted socket."""
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                        "client_test.js")
    with open(path, encoding="utf-8") as f:
        src = f.read()
    failures = browser.execute_async_script(CLIENT_TEST, src)
    if failures:
        fail("client_test.js:\n  " + "\n  ".join(failures))
    print("client_test.js: pass", flush=True)


def check_token(browser, exe, data_dir, servers):
    """With a token file, the page takes the token from ?token=, keeps it
    out of the address bar, and uses it for REST and the WebSocket."""
    # Characters a URL must escape, so the page has to encode it.
    token = "s3cret+t/k=n&x"
    token_file = os.path.join(data_dir, "token")
    with open(token_file, "w", encoding="utf-8") as f:
        f.write(token + "\n")
    srv = ServeProcess(exe, os.path.join(data_dir, "auth"),
                       extra=[f"--auth-token-file={token_file}"])
    servers.append(srv)
    status, _, body = srv.request("GET", "/v1/sessions")
    if status != 401:
        fail(f"GET /v1/sessions without the token answered {status} {body}")
    sid = srv.call("POST", "/v1/sessions", {"type": "echo"}, expect=201,
                   token=token)["id"]
    browser.get(srv.base + "/?token=" + urllib.parse.quote(token, safe=""))
    wait_until("the WebSocket is live with the token",
               lambda: badge(browser) == "live")
    wait_until("the session is listed with the token",
               lambda: browser.execute_script(
                   f"return !!document.querySelector('#sessions tr[data-id=\"{sid}\"]');"))
    if "token" in browser.current_url:
        fail(f"the token stays in the address bar: {browser.current_url}")
    browser.find_element(
        "css selector", f'#sessions tr[data-id="{sid}"] button.open').click()
    srv.call("POST", f"/v1/sessions/{sid}/messages", {"data": "x"},
             expect=202, token=token)
    expect_page_matches_store(browser, srv, sid,
                              "its events render with the token", token)
    code = srv.stop()
    if code != 0:
        fail(f"sessionhost serve exited with {code} on SIGTERM")
    print("token: REST and WebSocket from ?token=", flush=True)


def main():
    if len(sys.argv) != 2:
        fail("usage: dashboard_test.py SESSIONHOST_EXE")
    exe = sys.argv[1]
    if os.environ.get("SESSIONHOST_SANITIZED") == "1":
        print("skipped: no browser run under sanitizers")
        return 77
    browser = start_browser()
    data_dir = tempfile.mkdtemp(prefix="sessionhost-web-")
    servers = []  # every server started, killed at the end whatever happens
    try:
        srv = ServeProcess(exe, data_dir)
        servers.append(srv)
        check_static_files(srv)

        browser.get(srv.base + "/")
        wait_until("the WebSocket is live", lambda: badge(browser) == "live")
        run_client_unit_test(browser)

        # A session created through REST appears in the list.
        sid = srv.call("POST", "/v1/sessions",
                       {"type": "echo", "role": "e2e"}, expect=201)["id"]
        row = f'#sessions tr[data-id="{sid}"]'
        wait_until("the new session is listed", lambda: browser.execute_script(
            f"const r = document.querySelector('{row}');"
            "return r && r.dataset.state === 'ACTIVE' && "
            "r.cells[2].textContent === 'e2e';"))

        # Opened, it shows its events so far, then live ones in order.
        browser.find_element("css selector", f"{row} button.open").click()
        expect_page_matches_store(browser, srv, sid, "the history renders")
        for text in ("hello", "world"):
            srv.call("POST", f"/v1/sessions/{sid}/messages",
                     {"data": text}, expect=202)
        n = expect_page_matches_store(browser, srv, sid,
                                      "the live events render")
        print(f"live: {n} events on the page", flush=True)

        # Resume: stop the server (WebSockets close with 1001), send more
        # while the page reconnects, and check every event is there once.
        code = srv.stop()
        if code != 0:
            fail(f"sessionhost serve exited with {code} on SIGTERM")
        wait_until("the page notices the disconnect",
                   lambda: badge(browser) != "live")
        srv = ServeProcess(exe, data_dir, listen=f"127.0.0.1:{srv.port}")
        servers.append(srv)
        for text in ("after", "restart"):
            srv.call("POST", f"/v1/sessions/{sid}/messages",
                     {"data": text}, expect=202)
        wait_until("the WebSocket is live again",
                   lambda: badge(browser) == "live")
        srv.call("POST", f"/v1/sessions/{sid}/messages", {"data": "live"},
                 expect=202)
        n2 = expect_page_matches_store(browser, srv, sid,
                                       "every event once after the resume")
        if n2 <= n:
            fail(f"no new events after the restart ({n2} <= {n})")
        note = browser.execute_script(
            "return document.querySelector('#watch-info').textContent;")
        print(f"resume: {n2} events on the page, seqs 1..{n2} ({note!r})",
              flush=True)

        # The page's own create and terminate work too.
        browser.find_element("id", "create-role").send_keys("from-page")
        browser.find_element("id", "create-button").click()
        created = wait_until("the page creates a session", lambda: srv.call(
            "GET", "/v1/sessions?role=from-page")["sessions"])
        pid = created[0]["id"]
        wait_until("the page's session is listed", lambda: browser.execute_script(
            f"return !!document.querySelector('#sessions tr[data-id=\"{pid}\"]');"))
        browser.find_element(
            "css selector", f'#sessions tr[data-id="{pid}"] button.terminate').click()
        wait_until("the confirm dialog", lambda: _accept_alert(browser))
        wait_until("the page terminates it", lambda: srv.call(
            "GET", f"/v1/sessions/{pid}")["state"] == "CLEANED")
        code = srv.stop()
        if code != 0:
            fail(f"sessionhost serve exited with {code} on SIGTERM")
        check_token(browser, exe, data_dir, servers)
        print("PASS", flush=True)
        return 0
    finally:
        browser.quit()
        for srv in servers:
            srv.kill()
        shutil.rmtree(data_dir, ignore_errors=True)


def _accept_alert(browser):
    try:
        browser.switch_to.alert.accept()
        return True
    except Exception:  # no alert yet
        return False


if __name__ == "__main__":
    sys.exit(main())
