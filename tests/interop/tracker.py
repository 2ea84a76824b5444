#!/usr/bin/python3
"""A minimal HTTP BitTorrent tracker (BEP 3, compact peers of BEP 23) for loopback tests.

    /usr/bin/python3 tracker.py --port-file F [--port N] [--interval 5]

Binds 127.0.0.1 (port 0 = OS-chosen unless --port), writes the port to --port-file
atomically, and answers GET /announce with every peer that announced the same
info hash (the IP the request came from, the `port` parameter), except the asker.
`event=stopped` removes a peer. Memory is bounded: at most MAX_TORRENTS info hashes
and MAX_PEERS peers each. Stdlib only. Stops cleanly on SIGTERM/SIGINT.
"""

import argparse
import os
import signal
import socket
import struct
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

MAX_TORRENTS = 1024
MAX_PEERS = 512
PEER_TTL_SECONDS = 120


def bencode(value):
    """Encode int, bytes, str, list and dict (keys sorted as bytes)."""
    if isinstance(value, int):
        return b"i%de" % value
    if isinstance(value, str):
        value = value.encode()
    if isinstance(value, bytes):
        return b"%d:%s" % (len(value), value)
    if isinstance(value, list):
        return b"l" + b"".join(bencode(v) for v in value) + b"e"
    if isinstance(value, dict):
        items = sorted((k.encode() if isinstance(k, str) else k, v) for k, v in value.items())
        return b"d" + b"".join(bencode(k) + bencode(v) for k, v in items) + b"e"
    raise TypeError("cannot bencode %r" % type(value))


class Swarms:
    """info hash -> {(ip, port): (last_seen, is_seed)}, guarded by one lock."""

    def __init__(self):
        self.lock = threading.Lock()
        self.torrents = {}

    def announce(self, info_hash, peer, event, is_seed):
        now = time.monotonic()
        with self.lock:
            swarm = self.torrents.get(info_hash)
            if swarm is None:
                if len(self.torrents) >= MAX_TORRENTS:
                    return None
                swarm = self.torrents[info_hash] = {}
            for key in [k for k, (seen, _) in swarm.items() if now - seen > PEER_TTL_SECONDS]:
                del swarm[key]
            if event == "stopped":
                swarm.pop(peer, None)
            elif peer in swarm or len(swarm) < MAX_PEERS:
                swarm[peer] = (now, is_seed)
            others = [p for p in swarm if p != peer]
            seeds = sum(1 for _, s in swarm.values() if s)
            return others, seeds, len(swarm) - seeds


SWARMS = Swarms()
INTERVAL = 5


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"

    def do_GET(self):
        url = urlsplit(self.path)
        if url.path != "/announce":
            self.reply(404, bencode({"failure reason": "not found"}))
            return
        # latin-1 keeps the percent-decoded info_hash bytes intact.
        q = parse_qs(url.query, encoding="latin-1", keep_blank_values=True)
        try:
            info_hash = q["info_hash"][0].encode("latin-1")
            port = int(q["port"][0])
        except (KeyError, IndexError, ValueError):
            self.reply(200, bencode({"failure reason": "need info_hash and port"}))
            return
        if len(info_hash) != 20 or not 0 < port < 65536:
            self.reply(200, bencode({"failure reason": "bad info_hash or port"}))
            return
        event = q.get("event", [""])[0]
        is_seed = q.get("left", ["1"])[0] == "0"
        peer = (self.client_address[0], port)
        result = SWARMS.announce(info_hash, peer, event, is_seed)
        if result is None:
            self.reply(200, bencode({"failure reason": "too many torrents"}))
            return
        others, seeds, leechers = result
        compact = b""
        for ip, p in others:
            try:
                compact += socket.inet_aton(ip) + struct.pack(">H", p)
            except OSError:
                continue  # not IPv4
        body = {
            "interval": INTERVAL,
            "min interval": 1,
            "complete": seeds,
            "incomplete": leechers,
            "peers": compact,
        }
        self.reply(200, bencode(body))

    def reply(self, code, body):
        self.send_response(code)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, fmt, *args):
        sys.stderr.write("tracker: %s %s\n" % (self.client_address[0], fmt % args))


def write_port_file(path, port):
    tmp = "%s.tmp.%d" % (path, os.getpid())
    with open(tmp, "w") as f:
        f.write("%d\n" % port)
    os.replace(tmp, path)


def main(argv):
    global INTERVAL
    p = argparse.ArgumentParser(description="minimal loopback BitTorrent tracker")
    p.add_argument("--port-file")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--interval", type=int, default=5)
    args = p.parse_args(argv)
    INTERVAL = args.interval

    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    server.daemon_threads = True
    port = server.server_address[1]
    if args.port_file:
        write_port_file(args.port_file, port)
    print("PORT %d" % port, flush=True)

    def stop(_signum, _frame):
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    server.serve_forever(poll_interval=0.2)
    server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
