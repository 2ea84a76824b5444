#!/usr/bin/env python3
"""A stand-in media player for launcher tests: `m3u_player.py OUT PLAYLIST_OR_URL`.

Given an M3U playlist file (as acestream-launcher writes it) or a URL, fetches the first
stream URL it names to its end and writes the bytes to OUT. Exits 0 when it read something,
1 otherwise. Standard library only.
"""
import sys
import urllib.request


def main() -> int:
    out, target = sys.argv[1], sys.argv[2]
    url = target
    if not target.startswith("http"):
        with open(target, encoding="utf-8") as f:
            url = next(l.strip() for l in f if l.strip().startswith("http"))
    with urllib.request.urlopen(url, timeout=60) as r, open(out, "wb") as f:
        n = 0
        while True:
            chunk = r.read(1 << 16)
            if not chunk:
                break
            f.write(chunk)
            n += len(chunk)
    print(f"read {n} bytes from {url}")
    return 0 if n else 1


if __name__ == "__main__":
    sys.exit(main())
