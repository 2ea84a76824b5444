#!/usr/bin/python3
"""Orchestration and statistics of scripts/bench-live.sh (read its header for what is measured).

Run it through bench-live.sh (which builds peercdn first); stdlib only, /usr/bin/python3.
Every process it starts is kept in PROCS and killed on exit, on SIGINT and on SIGTERM; it never
signals a process it did not start.
"""

import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor

PEERCDN = os.environ["PEERCDN_BIN"]
NS = [int(x) for x in os.environ.get("BENCH_N", "10 30 60").split()]
SECONDS = float(os.environ.get("BENCH_SECONDS", "120"))
SAMPLE = float(os.environ.get("BENCH_SAMPLE", "1.0"))
JOINS = int(os.environ.get("BENCH_JOINS", "5"))
HLS_MAX = int(os.environ.get("BENCH_HLS_PLAYERS", "10"))
# -analyzeduration of the join decodes (µs): how much media ffmpeg reads before it decodes. Its
# default (5 s) makes any live join take ~5 s on a real-time stream, whoever serves it.
JOIN_PROBE = int(os.environ.get("BENCH_JOIN_PROBE_US", "500000"))
# A player's first frame is its first sample with at least this much media (s): ffmpeg 5.1
# -c copy reports its first packet (~20 ms of media) and then holds what it probed back for a
# second or two before writing it; counting from that report would charge ffmpeg's hold-up as
# a stall.
START_MEDIA = float(os.environ.get("BENCH_START_MEDIA", "0.5"))
KEEP = os.environ.get("BENCH_KEEP", "0") == "1"
# Broadcaster piece duration in ms (BENCH_PIECE_MS; empty: the broadcaster default, 500).
PIECE_ARGS = ["--piece-ms", os.environ["BENCH_PIECE_MS"]] if os.environ.get("BENCH_PIECE_MS") else []
BITRATE_NOMINAL = 2_000_000  # bit/s, the issue's "2 Mbit/s"
# Video bit rate of the source, kbit/s (BENCH_VIDEO_KBPS); the upload caps scale with it: the
# source's 3x and the viewers' 2x of the muxed rate (750 kB/s and 500 kB/s at the default).
VIDEO_KBPS = int(os.environ.get("BENCH_VIDEO_KBPS", "1900"))
SCALE = VIDEO_KBPS / 1900
SOURCE_CAP = f"{round(750 * SCALE)}KB"
VIEWER_CAP = f"{round(500 * SCALE)}KB"
# Enough source for the slowest start-up (60 engines one after another) plus the window.
SOURCE_S = int(SECONDS) + 60

NO_PROXY_ENV = {
    k: v
    for k, v in os.environ.items()
    if k.lower() not in ("http_proxy", "https_proxy", "all_proxy", "no_proxy")
}
HTTP = urllib.request.build_opener(urllib.request.ProxyHandler({}))
CLK_TCK = os.sysconf("SC_CLK_TCK")

PROCS = []  # every subprocess.Popen we started (and only those)
PROCS_LOCK = threading.Lock()


def log(msg):
    print(f"[bench-live] {msg}", file=sys.stderr, flush=True)


def spawn(args, logfile, env=None):
    """Starts a process with stdout+stderr to logfile and records it for cleanup."""
    out = open(logfile, "wb")
    p = subprocess.Popen(
        args,
        stdin=subprocess.DEVNULL,
        stdout=out,
        stderr=subprocess.STDOUT,
        env=env if env is not None else NO_PROXY_ENV,
    )
    out.close()
    with PROCS_LOCK:
        PROCS.append(p)
    return p


def stop(procs, grace=5.0):
    """SIGTERM, then SIGKILL after `grace` s, for processes we started; reaps them."""
    for p in procs:
        if p.poll() is None:
            try:
                p.terminate()
            except OSError:
                pass
    deadline = time.monotonic() + grace
    for p in procs:
        left = max(0.0, deadline - time.monotonic())
        try:
            p.wait(timeout=left)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
    with PROCS_LOCK:
        for p in procs:
            if p in PROCS:
                PROCS.remove(p)


def stop_all():
    with PROCS_LOCK:
        procs = list(PROCS)
    stop(procs, grace=3.0)


def on_signal(signum, _frame):
    raise KeyboardInterrupt(f"signal {signum}")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def port_open(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


def http_json(url, timeout=3.0):
    """GET url as JSON; None on any failure (a sample is skipped, never fatal)."""
    try:
        with HTTP.open(url, timeout=timeout) as r:
            return json.loads(r.read())
    except (OSError, ValueError):
        return None


def wait_lines(path, proc, prefixes, limit=60.0):
    """Waits until the log at path has a line starting with each prefix; returns the values."""
    found = {}
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        try:
            with open(path, "r", errors="replace") as f:
                for line in f:
                    for pre in prefixes:
                        if pre not in found and line.startswith(pre):
                            found[pre] = line[len(pre):].strip()
        except OSError:
            pass
        if len(found) == len(prefixes):
            return found
        if proc.poll() is not None:
            raise RuntimeError(f"{path}: process exited ({proc.returncode}): {tail(path)}")
        time.sleep(0.05)
    raise RuntimeError(f"{path}: timed out waiting for {prefixes}: {tail(path)}")


def tail(path, n=5):
    try:
        with open(path, "r", errors="replace") as f:
            return " | ".join(f.read().splitlines()[-n:])
    except OSError:
        return ""


def pct(values, q):
    """The q-th percentile (0..100) by linear interpolation; None for no values."""
    if not values:
        return None
    v = sorted(values)
    k = (len(v) - 1) * q / 100.0
    lo = int(k)
    hi = min(lo + 1, len(v) - 1)
    return v[lo] + (v[hi] - v[lo]) * (k - lo)


# --------------------------------------------------------------------------- per-process probes


def proc_cpu_s(pid):
    """utime+stime of a process in seconds, None when gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK
    except (OSError, IndexError, ValueError):
        return None


def proc_hwm_mib(pid):
    """Peak RSS (VmHWM) of a process in MiB, None when gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except (OSError, IndexError, ValueError):
        pass
    return None


def host_cpu():
    """(busy, total) jiffies of the whole machine."""
    with open("/proc/stat") as f:
        parts = [int(x) for x in f.readline().split()[1:]]
    idle = parts[3] + (parts[4] if len(parts) > 4 else 0)
    return sum(parts) - idle, sum(parts)


class Progress:
    """Follows an ffmpeg -progress file: the newest out_time_us, read incrementally."""

    def __init__(self, path):
        self.path = path
        self.offset = 0
        self.media_s = 0.0

    def poll(self):
        try:
            with open(self.path, "rb") as f:
                f.seek(self.offset)
                chunk = f.read()
        except OSError:
            return self.media_s
        end = chunk.rfind(b"\n")
        if end < 0:
            return self.media_s
        self.offset += end + 1
        for line in chunk[:end].split(b"\n"):
            if line.startswith(b"out_time_us="):
                try:
                    us = int(line[12:])
                except ValueError:
                    continue
                if us > 0:
                    self.media_s = max(self.media_s, us / 1e6)
        return self.media_s


# --------------------------------------------------------------------------- statistics


def continuity(samples):
    """samples: [(wall_s, media_s)]. Simulates a player that starts at the first frame with the
    media it has then and plays in real time; returns (played_s, stalled_s) or None."""
    start = next((i for i, (_, m) in enumerate(samples) if m >= START_MEDIA), None)
    if start is None:
        return None
    # ffmpeg writes its progress every 0.25 s: its first report can fall in the middle of the
    # burst it outputs once probing ends, before it has written what it already holds. The
    # media it had at its first frame is estimated as max(media then, media at the next sample
    # minus that interval): generous if the engine also bursts during that one interval.
    if start + 1 < len(samples):
        (t_a, m_a), (t_b, m_b) = samples[start], samples[start + 1]
        samples = list(samples)
        samples[start] = (t_a, max(m_a, m_b - (t_b - t_a)))
    # The media received by the first frame is the start-up buffer: playback starts at media
    # time 0 with that much ahead of it.
    pos = 0.0
    played = stalled = 0.0
    prev_t = samples[start][0]
    for t, m in samples[start + 1:]:
        dt = t - prev_t
        prev_t = t
        have = m
        if have >= pos + dt:
            played += dt
            pos += dt
        else:
            got = max(0.0, have - pos)
            played += got
            stalled += dt - got
            pos += got
    return played, stalled


# --------------------------------------------------------------------------- one N


class Run:
    def __init__(self, root, src, n):
        self.n = n
        self.dir = os.path.join(root, f"n{n}")
        os.makedirs(self.dir)
        self.src = src
        self.procs = []
        self.ports = []
        self.hdr_ts = {}  # piece index -> source timestamp (s), read from seg/INDEX.hdr

    def p(self, name):
        return os.path.join(self.dir, name)

    def start_nginx(self, publish):
        prefix = self.p("nginx")
        os.makedirs(os.path.join(prefix, "tmp"))
        port = free_port()
        user = "user root;\n" if os.geteuid() == 0 else ""
        conf = f"""daemon off;
master_process off;
worker_processes 1;
{user}pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 1024; }}
http {{
  log_format bench '$msec $request_uri $bytes_sent';
  access_log {prefix}/access.log bench;
  client_body_temp_path {prefix}/tmp/body;
  proxy_temp_path {prefix}/tmp/proxy;
  fastcgi_temp_path {prefix}/tmp/fastcgi;
  uwsgi_temp_path {prefix}/tmp/uwsgi;
  scgi_temp_path {prefix}/tmp/scgi;
  default_type application/octet-stream;
  types {{ application/vnd.apple.mpegurl m3u8; video/mp2t ts; }}
  sendfile on;
  server {{
    listen 127.0.0.1:{port};
    root {publish};
    location / {{ }}
  }}
}}
"""
        with open(os.path.join(prefix, "nginx.conf"), "w") as f:
            f.write(conf)
        nginx = "/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else "nginx"
        proc = spawn(
            [nginx, "-p", prefix, "-e", f"{prefix}/error.log", "-c", f"{prefix}/nginx.conf"],
            os.path.join(prefix, "stderr.log"),
        )
        self.procs.append(proc)
        self.ports.append(port)
        for _ in range(200):
            if port_open(port):
                self.nginx_port = port
                self.nginx_log = os.path.join(prefix, "access.log")
                return
            if proc.poll() is not None:
                break
            time.sleep(0.05)
        raise RuntimeError(f"nginx did not start: {tail(os.path.join(prefix, 'error.log'))}")

    def start_broadcast(self, publish):
        logf = self.p("broadcast.log")
        proc = spawn(
            [PEERCDN, "broadcast", "--input", self.src, "--name", "bench",
             "--publish-dir", publish, "--port", "0", "--http-port", "0",
             "--bind", "127.0.0.1", "--data-dir", self.p("bc-data"), "--no-dht",
             "--upload-limit", SOURCE_CAP] + PIECE_ARGS,
            logf, env=dict(NO_PROXY_ENV, PEERCDN_LOG="warn"),
        )
        self.procs.append(proc)
        v = wait_lines(logf, proc, ["port: ", "http: ", "id: "])
        self.bc = proc
        self.bc_port = int(v["port: "])
        self.bc_http = v["http: "].rstrip("/")
        self.id = v["id: "]
        self.ports += [self.bc_port, int(self.bc_http.rsplit(":", 1)[1])]
        self.seg_dir = os.path.join(publish, self.id, "seg")

    def start_viewers(self):
        self.viewers = []  # (proc, port, base)
        for k in range(self.n):
            logf = self.p(f"viewer{k}.log")
            args = [PEERCDN, "engine", "--port", "0", "--http-port", "0", "--bind", "127.0.0.1",
                    "--data-dir", self.p(f"v{k}-data"), "--no-dht", "--upload-limit", VIEWER_CAP,
                    "--peer", f"127.0.0.1:{self.bc_port}"]
            if self.viewers:
                args += ["--peer", f"127.0.0.1:{self.viewers[-1][1]}"]
            proc = spawn(args, logf, env=dict(NO_PROXY_ENV, PEERCDN_LOG="warn"))
            self.procs.append(proc)
            v = wait_lines(logf, proc, ["port: ", "http: "])
            port = int(v["port: "])
            base = v["http: "].rstrip("/")
            self.ports += [port, int(base.rsplit(":", 1)[1])]
            self.viewers.append((proc, port, base))

    def start_players(self):
        self.players = []  # dict(proc, progress, stat_url, samples, delays)
        for k, (_, _, base) in enumerate(self.viewers):
            r = http_json(f"{base}/ace/getstream?id={self.id}&format=json", timeout=30)
            resp = (r or {}).get("response") or {}
            if "playback_url" not in resp:
                raise RuntimeError(f"viewer{k}: getstream format=json: {r}")
            prog = self.p(f"player{k}.progress")
            proc = spawn(
                ["ffmpeg", "-nostdin", "-hide_banner", "-v", "error", "-progress", prog,
                 "-stats_period", "0.25", "-i", resp["playback_url"], "-c", "copy",
                 "-f", "null", "-"],
                self.p(f"player{k}.log"),
            )
            self.procs.append(proc)
            self.players.append({"proc": proc, "progress": Progress(prog),
                                 "stat_url": resp.get("stat_url"), "samples": [],
                                 "delays": []})
        self.hls = []
        # The low-latency playlist lists parts before its first whole segment; ffmpeg's HLS
        # reader skips parts, finds no stream in a playlist without a segment and exits.
        playlist = f"http://127.0.0.1:{self.nginx_port}/{self.id}/live.m3u8"
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                with HTTP.open(playlist, timeout=2) as r:
                    if b"#EXTINF" in r.read():
                        break
            except OSError:
                pass
            time.sleep(0.1)
        for k in range(min(self.n, HLS_MAX)):
            prog = self.p(f"hls{k}.progress")
            proc = spawn(
                ["ffmpeg", "-nostdin", "-hide_banner", "-v", "error", "-progress", prog,
                 "-stats_period", "0.25", "-i", playlist,
                 "-c", "copy", "-f", "null", "-"],
                self.p(f"hls{k}.log"),
            )
            self.procs.append(proc)
            self.hls.append({"proc": proc, "progress": Progress(prog), "samples": []})

    def scan_headers(self):
        try:
            names = os.listdir(self.seg_dir)
        except OSError:
            return
        for name in names:
            if not name.endswith(".hdr"):
                continue
            try:
                idx = int(name[:-4])
            except ValueError:
                continue
            if idx in self.hdr_ts:
                continue
            try:
                with open(os.path.join(self.seg_dir, name), "rb") as f:
                    h = f.read(12)
            except OSError:
                continue
            if len(h) == 12:
                self.hdr_ts[idx] = int.from_bytes(h[4:12], "big") / 1e6

    def live_stats(self):
        """(source uploaded, [viewer (p2p, cdn)]) from /api/v1/live/ID."""
        urls = [f"{self.bc_http}/api/v1/live/{self.id}"] + [
            f"{b}/api/v1/live/{self.id}" for _, _, b in self.viewers]
        with ThreadPoolExecutor(8) as ex:
            res = list(ex.map(http_json, urls))
        src = (res[0] or {}).get("uploaded") or 0
        viewers = [((r or {}).get("p2p_downloaded") or 0, (r or {}).get("cdn_downloaded") or 0)
                   for r in res[1:]]
        return src, viewers

    def join_once(self, name, url, probe):
        """ms from start to exit of a first-frame decode, None on failure."""
        args = ["ffmpeg", "-nostdin", "-hide_banner", "-v", "error"]
        if probe:
            args += ["-analyzeduration", str(probe)]
        start = time.monotonic()
        proc = spawn(args + ["-i", url, "-frames:v", "1", "-f", "null", "-"],
                     self.p(f"{name}.log"))
        try:
            rc = proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            rc = None
        ms = (time.monotonic() - start) * 1000
        stop([proc])
        return ms if rc == 0 else None

    def joins(self, t0, out, out_default):
        """JOINS timed first-frame decodes, spread over the window, on spread-out viewers: one
        with ffmpeg probing JOIN_PROBE µs of media, one with ffmpeg's default (5 s)."""
        for k in range(JOINS):
            at = t0 + SECONDS * (k + 0.5) / JOINS
            time.sleep(max(0.0, at - time.monotonic()))
            v = (k * self.n // JOINS + self.n // (2 * JOINS)) % self.n
            base = self.viewers[v][2]
            url = f"{base}/ace/getstream?id={self.id}&pid=join{k}"
            ms = self.join_once(f"join{k}", url, JOIN_PROBE)
            msd = self.join_once(f"join{k}-default", url + "d", None)
            log(f"N={self.n} join{k} on viewer{v}: {fmt(ms, '.0f', 'FAIL')} ms "
                f"(ffmpeg default probing: {fmt(msd, '.0f', 'FAIL')} ms)")
            out.append(ms)
            out_default.append(msd)

    def measure(self):
        pids = [p.pid for p, _, _ in self.viewers]
        cpu0 = [proc_cpu_s(pid) for pid in pids]
        bc_cpu0 = proc_cpu_s(self.bc.pid)
        ours0 = {p.pid: proc_cpu_s(p.pid) for p in self.procs}
        host0 = host_cpu()
        src0, v0 = self.live_stats()
        t0 = time.monotonic()
        wall0 = time.time()
        join_ms, join_default = [], []
        jt = threading.Thread(target=self.joins, args=(t0, join_ms, join_default), daemon=True)
        jt.start()
        ex = ThreadPoolExecutor(8)
        next_t = t0
        last_report = t0
        while True:
            now = time.monotonic()
            if now - t0 >= SECONDS:
                break
            self.scan_headers()
            stats = list(ex.map(lambda pl: http_json(pl["stat_url"], 2.0) if pl["stat_url"]
                                else None, self.players))
            for pl, st in zip(self.players, stats):
                t = time.monotonic()
                m = pl["progress"].poll()
                pl["samples"].append((t, m))
                st = (st or {}).get("response") or st or {}  # the Ace envelope
                d = st.get("delay_ms")
                if m >= START_MEDIA and isinstance(d, (int, float)):
                    pl["delays"].append(d / 1000.0)
            for h in self.hls:
                h["samples"].append((time.monotonic(), h["progress"].poll()))
            if now - last_report >= 15:
                last_report = now
                media = [pl["progress"].media_s for pl in self.players]
                log(f"N={self.n} t={now - t0:.0f}s media min/median/max "
                    f"{min(media):.1f}/{statistics.median(media):.1f}/{max(media):.1f} s")
            next_t += SAMPLE
            time.sleep(max(0.0, next_t - time.monotonic()))
        t1 = time.monotonic()
        wall1 = time.time()
        window = t1 - t0
        src1, v1 = self.live_stats()
        cpu1 = [proc_cpu_s(pid) for pid in pids]
        bc_cpu1 = proc_cpu_s(self.bc.pid)
        ours1 = {p.pid: proc_cpu_s(p.pid) for p in self.procs}
        host1 = host_cpu()
        self.ours_cpu = sum(ours1[k] - v for k, v in ours0.items()
                            if v is not None and ours1.get(k) is not None)
        hwm = [proc_hwm_mib(pid) for pid in pids]
        self.scan_headers()
        ex.shutdown()
        jt.join(timeout=40)
        return self.stats(window, wall0, wall1, src0, src1, v0, v1, cpu0, cpu1, bc_cpu0,
                          bc_cpu1, host0, host1, hwm, join_ms, join_default)

    def stats(self, window, wall0, wall1, src0, src1, v0, v1, cpu0, cpu1, bc_cpu0, bc_cpu1,
              host0, host1, hwm, join_ms, join_default):
        r = {"n": self.n, "window": window}
        conts = []
        never = 0
        for k, pl in enumerate(self.players):
            c = continuity(pl["samples"])
            if c is None:
                never += 1
                conts.append(0.0)
                continue
            played, stalled = c
            conts.append(played / (played + stalled) if played + stalled > 0 else 0.0)
            if stalled > 0:
                first = next(t for t, m in pl["samples"] if m >= START_MEDIA) - pl["samples"][0][0]
                log(f"N={self.n} player{k}: stalled {stalled:.1f} s of {played + stalled:.1f} s "
                    f"(first frame {first:.1f} s after the window opened)")
            if pl["proc"].poll() is not None:
                log(f"N={self.n} player{k} exited early ({pl['proc'].returncode}): "
                    f"{tail(self.p(f'player{k}.log'), 2)}")
        r["never_played"] = never
        r["cont_mean"] = statistics.mean(conts) if conts else None
        r["cont_worst"] = min(conts) if conts else None
        delays = [d for pl in self.players for d in pl["delays"]]
        r["delay_p50"], r["delay_p95"] = pct(delays, 50), pct(delays, 95)
        # Bytes over the window.
        up = src1 - src0
        recv = sum(p + c for p, c in v1) - sum(p + c for p, c in v0)
        cdn = sum(c for _, c in v1) - sum(c for _, c in v0)
        r["src_up_x"] = up * 8 / window / self.bitrate
        r["from_src"] = 100.0 * up / recv if recv > 0 else None
        r["viewers_cdn"] = cdn
        r["src_kbps_per_viewer"] = up / window / self.n / 1000
        good_joins = [j for j in join_ms if j is not None]
        r["join_med"] = statistics.median(good_joins) if good_joins else None
        r["join_fail"] = len(join_ms) - len(good_joins)
        good = [j for j in join_default if j is not None]
        r["join_default_med"] = statistics.median(good) if good else None
        cpus = [b - a for a, b in zip(cpu0, cpu1) if a is not None and b is not None]
        r["cpu_pct"] = 100.0 * statistics.mean(cpus) / window if cpus else None
        r["src_cpu_pct"] = (100.0 * (bc_cpu1 - bc_cpu0) / window
                            if bc_cpu0 is not None and bc_cpu1 is not None else None)
        r["host_busy"] = 100.0 * (host1[0] - host0[0]) / max(1, host1[1] - host0[1])
        # The same in % of the machine (all cores), for our long-lived processes only.
        r["ours_busy"] = 100.0 * self.ours_cpu / window / (os.cpu_count() or 1)
        rss = [h for h in hwm if h is not None]
        r["rss_mean"] = statistics.mean(rss) if rss else None
        r["rss_max"] = max(rss) if rss else None
        r["dead_viewers"] = sum(1 for p, _, _ in self.viewers if p.poll() is not None)
        # HLS: nginx's log over the same window.
        hls_delays, origin = [], 0
        # A part is seg/INDEX.ts, a segment seg/FIRST-LAST.ts (its delay: from its first piece,
        # where a player starts it).
        seg_re = re.compile(r"^/" + re.escape(self.id) + r"/seg/(\d+)(?:-\d+)?\.ts")
        try:
            with open(self.nginx_log) as f:
                for line in f:
                    parts = line.split()
                    if len(parts) != 3:
                        continue
                    try:
                        t, uri, sent = float(parts[0]), parts[1], int(parts[2])
                    except ValueError:
                        continue
                    if not (wall0 <= t <= wall1) or not uri.startswith(f"/{self.id}/"):
                        continue
                    origin += sent
                    m = seg_re.match(uri)
                    if m and int(m.group(1)) in self.hdr_ts:
                        hls_delays.append(t - self.hdr_ts[int(m.group(1))])
        except OSError:
            pass
        r["hls_p50"], r["hls_p95"] = pct(hls_delays, 50), pct(hls_delays, 95)
        r["hls_kbps_per_viewer"] = origin / window / max(1, len(self.hls)) / 1000
        hconts = [c[0] / (c[0] + c[1]) for c in map(continuity, (h["samples"] for h in self.hls))
                  if c is not None and c[0] + c[1] > 0]
        r["hls_cont"] = statistics.mean(hconts) if hconts else None
        log(f"N={self.n} result: {json.dumps(r, default=str)}")
        with open(self.p("samples.json"), "w") as f:
            json.dump({"players": [{"samples": pl["samples"], "delays": pl["delays"]}
                                   for pl in self.players],
                       "hls": [h["samples"] for h in self.hls],
                       "viewer_bytes_start": v0, "viewer_bytes_end": v1,
                       "source_uploaded": [src0, src1]}, f)
        return r

    def wait_ports_free(self):
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if not any(port_open(p) for p in self.ports):
                return
            time.sleep(0.2)
        log(f"N={self.n}: some ports still open after 30 s")

    def run(self, bitrate):
        self.bitrate = bitrate
        publish = self.p("publish")
        os.makedirs(publish)
        try:
            self.start_nginx(publish)
            self.start_broadcast(publish)
            t = time.monotonic()
            self.start_viewers()
            log(f"N={self.n}: source {self.id[:8]}…, {self.n} viewers up in "
                f"{time.monotonic() - t:.1f} s")
            self.start_players()
            return self.measure()
        finally:
            stop(self.procs)
            self.wait_ports_free()


# --------------------------------------------------------------------------- main


def make_source(root):
    out = os.path.join(root, "source.ts")
    log(f"source: {SOURCE_S} s of testsrc2 320x240 25 fps, x264 CBR {VIDEO_KBPS}k, 1 s GOP, "
        "AAC 96k")
    subprocess.run(
        ["ffmpeg", "-nostdin", "-hide_banner", "-v", "error", "-y",
         "-f", "lavfi", "-t", str(SOURCE_S), "-i", "testsrc2=size=320x240:rate=25",
         "-f", "lavfi", "-t", str(SOURCE_S), "-i", "sine=frequency=440:sample_rate=48000",
         "-c:v", "libx264", "-preset", "ultrafast",
         "-x264-params", "keyint=25:min-keyint=25:scenecut=0:nal-hrd=cbr",
         "-b:v", f"{VIDEO_KBPS}k", "-maxrate", f"{VIDEO_KBPS}k", "-bufsize", f"{VIDEO_KBPS}k",
         "-c:a", "aac", "-b:a", "96k", "-f", "mpegts", out],
        check=True, env=NO_PROXY_ENV)
    bitrate = os.path.getsize(out) * 8 / SOURCE_S
    log(f"source: {os.path.getsize(out) / 1e6:.1f} MB, {bitrate / 1e6:.2f} Mbit/s as muxed")
    return out, bitrate


def fmt(v, spec, none="n/a"):
    return none if v is None else format(v, spec)


def table(rows, bitrate):
    print()
    print(f"Live streaming, one source (1 s GOP, {bitrate / 1e6:.2f} Mbit/s muxed, upload cap "
          f"{SOURCE_CAP}/s) and N viewers (upload cap {VIEWER_CAP}/s each) on 127.0.0.1, "
          f"{SECONDS:.0f} s per N; HLS = min(N, {HLS_MAX}) ffmpeg players on nginx beside it")
    print()
    print("| N | continuity mean (worst) | delay p50/p95 s | source up ÷ bitrate "
          "| viewers' bytes from source | join median ms (0.5 s probe) | CPU %/viewer | RSS MiB mean/max "
          "| HLS delay p50/p95 s | origin kB/s per viewer HLS / peercdn | host busy (ours) |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        if "error" in r:
            print(f"| {r['n']} | FAIL: {r['error']} |||||||||| ")
            continue
        cont = (f"{fmt(r['cont_mean'] and 100 * r['cont_mean'], '.2f')} % "
                f"({fmt(r['cont_worst'] and 100 * r['cont_worst'], '.2f')} %)")
        join = fmt(r["join_med"], ".0f")
        if r["join_fail"]:
            join += f" ({r['join_fail']} failed)"
        print(f"| {r['n']} | {cont} | {fmt(r['delay_p50'], '.2f')} / {fmt(r['delay_p95'], '.2f')} "
              f"| {fmt(r['src_up_x'], '.2f')}× | {fmt(r['from_src'], '.1f')} % | {join} "
              f"| {fmt(r['cpu_pct'], '.1f')} | {fmt(r['rss_mean'], '.1f')} / "
              f"{fmt(r['rss_max'], '.1f')} | {fmt(r['hls_p50'], '.2f')} / "
              f"{fmt(r['hls_p95'], '.2f')} | {fmt(r['hls_kbps_per_viewer'], '.1f')} / "
              f"{fmt(r['src_kbps_per_viewer'], '.1f')} | {fmt(r['host_busy'], '.0f')} % ({fmt(r['ours_busy'], '.0f')} %) |")
    print()
    print("Goals: continuity ≥ 99.9 %, p95 delay ≤ 2 s, join ≤ 1 s, source upload ≤ 2× bitrate "
          "whatever N, ≤ 64 MiB RSS per viewer.")
    for r in rows:
        if "error" in r:
            continue
        missed = []
        if r["cont_mean"] is None or r["cont_mean"] < 0.999:
            missed.append("continuity")
        if r["delay_p95"] is None or r["delay_p95"] > 2.0:
            missed.append("p95 delay")
        if r["join_med"] is None or r["join_med"] > 1000 or r["join_fail"]:
            missed.append("join")
        if r["src_up_x"] > 2.0:
            missed.append("source upload")
        if r["rss_max"] is None or r["rss_max"] > 64:
            missed.append("RSS")
        notes = []
        if r["never_played"]:
            notes.append(f"{r['never_played']} player(s) never got a frame")
        if r["dead_viewers"]:
            notes.append(f"{r['dead_viewers']} viewer engine(s) died")
        if r["viewers_cdn"]:
            notes.append(f"viewers fetched {r['viewers_cdn']} B from the CDN")
        notes.append(f"join with ffmpeg's default 5 s probing {fmt(r['join_default_med'], '.0f')} ms")
        notes.append(f"source CPU {fmt(r['src_cpu_pct'], '.0f')} %")
        notes.append(f"HLS continuity {fmt(r['hls_cont'] and 100 * r['hls_cont'], '.2f')} %")
        print(f"- N={r['n']}: " + ("all goals met" if not missed else "missed: " + ", ".join(missed))
              + "; " + "; ".join(notes))


def main():
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    started = time.monotonic()
    root = tempfile.mkdtemp(prefix="peercdn-bench-live.", dir=os.environ.get("TMPDIR", "/tmp"))
    rows = []
    bitrate = BITRATE_NOMINAL
    try:
        src, bitrate = make_source(root)
        for n in NS:
            log(f"N={n}: {SECONDS:.0f} s")
            try:
                rows.append(Run(root, src, n).run(bitrate))
            except RuntimeError as e:
                log(f"N={n}: {e}")
                rows.append({"n": n, "error": str(e)[:120]})
    except KeyboardInterrupt:
        log("interrupted")
        stop_all()
        return 130
    finally:
        stop_all()
        if KEEP:
            log(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    table(rows, bitrate)
    print(f"\nTotal runtime: {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
