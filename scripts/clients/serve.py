"""The page server for the browser check of scripts/clients.sh (Python standard library only).

Usage: serve.py DIR PORT_FILE REPORT_FILE

Listens on 127.0.0.1 (a free port, written to PORT_FILE), serves the files of DIR on GET, and
writes the body of the first POST to /report into REPORT_FILE; exits after that report, or after
120 s in any case.
"""

import http.server
import os
import sys
import threading

DIR, PORT_FILE, REPORT_FILE = sys.argv[1:4]


class Handler(http.server.SimpleHTTPRequestHandler):
    def __init__(self, *a, **kw):
        super().__init__(*a, directory=DIR, **kw)

    def do_POST(self):  # noqa: N802 - http.server's naming
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.send_response(204)
        self.end_headers()
        if self.path == "/report":
            tmp = REPORT_FILE + ".tmp"
            with open(tmp, "wb") as f:
                f.write(body)
            os.replace(tmp, REPORT_FILE)
            threading.Thread(target=self.server.shutdown, daemon=True).start()

    def log_message(self, *a):
        pass


srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
with open(PORT_FILE + ".tmp", "w") as f:
    f.write(str(srv.server_address[1]))
os.replace(PORT_FILE + ".tmp", PORT_FILE)
timer = threading.Timer(120, srv.shutdown)
timer.daemon = True
timer.start()
srv.serve_forever()
