#!/usr/bin/env python3
"""Drives a peercdn engine with python-acestream (PyPI `acestream` 0.2.0), the Ace Stream
engine client library that acestream-launcher and other players are built on, as a user of it
would: is the engine there and which API level does it speak, start a stream by infohash
(the library then names it from the server API's media files), read its playback URL to the
end, watch the stats it polls, stop it, search for it; then start one the engine must refuse
and read the message the library reports.

Prints one JSON line with what it saw; exits non-zero (with the reason on stderr) when the
library reports anything other than what an Ace engine would give it.

Usage: ace_client.py --engine http://127.0.0.1:PORT --infohash IH --out FILE --query WORDS
"""

import argparse
import json
import sys
import threading
import time
import urllib.parse
import urllib.request

from acestream.search import Search
from acestream.server import Server
from acestream.stream import Stream


def fail(msg):
    print(f"ace_client: {msg}", file=sys.stderr)
    sys.exit(1)


def wait(what, cond, timeout=30.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return
        time.sleep(0.1)
    fail(f"timed out waiting for {what}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--engine", required=True)
    ap.add_argument("--infohash", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--query", required=True, help="words of the content's name")
    a = ap.parse_args()
    u = urllib.parse.urlsplit(a.engine)
    server = Server(host=u.hostname, port=u.port)

    if not server.available:
        fail("Server.available is false: get_version gave no version")
    version = server.version

    events = {}
    lock = threading.Lock()

    def on(name):
        def record(*args):
            with lock:
                events[name] = args
        return record

    stream = Stream(server, infohash=a.infohash)
    for name in ("started", "stopped", "error"):
        stream.connect(name, on(name))
    stream.start()
    if "error" in events:
        fail(f"start reported an error: {events['error']}")
    if "started" not in events:
        fail("start emitted neither started nor error")
    for key in ("playback_url", "stat_url", "command_url", "playback_session_id"):
        if not getattr(stream, key, None):
            fail(f"the stream has no {key} after start")
    # start() asked the server API for the media files: the stream has a name.
    if not stream.info.name or not stream.info.files:
        fail(f"no media files after start: name {stream.info.name!r}, files {stream.info.files!r}")

    # The stats poller (one request a second) fills these from the stat URL.
    wait("the first stats", lambda: stream.stats.status is not None)
    with urllib.request.urlopen(stream.playback_url, timeout=120) as r, open(a.out, "wb") as f:
        while True:
            chunk = r.read(1 << 16)
            if not chunk:
                break
            f.write(chunk)
    wait("stats showing the whole file", lambda: stream.stats.total_progress == 100)
    stats = {k: getattr(stream.stats, k) for k in
             ("status", "peers", "speed_down", "downloaded", "total_progress")}

    # Search (the library first fetches an API token): what the engine holds is found (before stop: the
    # last stop of a stream getstream started removes it from the engine).
    search = Search(server, query=a.query)
    search.get(page=0)
    hits = [r.infohash for r in (search.results or [])]
    if a.infohash.lower() not in hits:
        fail(f"search {a.query!r} did not find {a.infohash}: {hits}")

    stream.stop()
    if "stopped" not in events:
        fail(f"stop did not succeed: {events.get('error')}")

    # A stream the engine must refuse: the library reports the engine's own message.
    bad = Stream(server, url="gopher://127.0.0.1/x.torrent")
    bad.connect("error", on("bad"))
    bad.connect("started", on("bad_started"))
    bad.start()
    if "bad_started" in events:
        fail("a gopher:// URL was started")
    if "bad" not in events:
        fail("a gopher:// URL gave no error event")
    message = events["bad"][0] if events["bad"] else ""
    if not message or message.startswith("HTTP Error"):
        fail(f"the library saw an HTTP error, not the engine's message: {message!r}")

    # HLS (`start(hls=True)`, as Horus plays everything): the playback URL is the VoD
    # playlist of the torrent's .ts file, its segments MPEG-TS.
    hls = Stream(server, infohash=a.infohash)
    hls.connect("error", on("hls_error"))
    hls.start(hls=True)
    if "hls_error" in events:
        fail(f"start(hls=True) reported an error: {events['hls_error']}")
    if "manifest.m3u8" not in (hls.playback_url or ""):
        fail(f"start(hls=True) gave no playlist: {hls.playback_url!r}")
    with urllib.request.urlopen(hls.playback_url, timeout=120) as r:
        playlist = r.read().decode()
    if not playlist.startswith("#EXTM3U") or "#EXT-X-ENDLIST" not in playlist:
        fail(f"not a VoD playlist:\n{playlist}")
    segments = [line for line in playlist.splitlines() if line.startswith("http")]
    with urllib.request.urlopen(segments[-1], timeout=120) as r:
        last = r.read()
    if not last or last[0] != 0x47 or len(last) % 188:
        fail(f"the last segment is not MPEG-TS ({len(last)} bytes)")
    hls.stop()

    print(json.dumps({
        "hls_segments": len(segments),
        "version": version,
        "name": stream.info.name,
        "files": len(stream.info.files),
        "stats": stats,
        "search_total": search.total,
        "refused": message,
    }))


if __name__ == "__main__":
    main()
