#!/usr/bin/python3
"""A libtorrent peer for peercdn's interop tests and benchmarks, driven by flags.

Run ONLY with Debian's /usr/bin/python3 (python3-libtorrent 2.0.8 is not importable
by other interpreters). Everything stays on 127.0.0.1: DHT, LSD, UPnP and NAT-PMP are
disabled in the settings handed to the session *constructor* (set later, they would
already have sent traffic), uTP is off (TCP only) unless --transport says otherwise
and, unless --encryption says otherwise, encryption is off for outgoing connections, so
libtorrent dials with a plain `\\x13BitTorrent protocol` handshake.

Subcommands:

  create  --path PATH --out FILE.torrent [--piece-size N] [--tracker URL]
      Make a v1-only torrent of a file or directory; print the info hash (hex).
  corrupt --torrent T --save DIR --keep even|odd|first-half|second-half|all
      Overwrite with zeros every piece NOT kept (multi-file aware), to build
      partial seeders.
  seed    --torrent T --save DIR [--port-file F] [--upload-limit BPS]
          [--pieces even|odd|all|first-half|second-half] [--peer HOST:PORT ...]
      Check the data in DIR, seed what verifies, download the rest from peers,
      seed until SIGTERM/SIGINT (exit 0). --pieces X first runs `corrupt --keep X`.
  leech   (--torrent T | --magnet URI) --save DIR [--port-file F]
          [--peer HOST:PORT ...] [--seed-after] [--timeout S]
      Download; exit 0 after DONE unless --seed-after (then seed until killed).

  --verbose (seed, leech) prints peer connect/disconnect alerts on stderr.
  --print-peers (seed, leech) prints a PEER line for every new connection (below).
  --encryption default|forced|disabled (seed, leech): MSE/PE policy. default dials plaintext
  and accepts plaintext or MSE; forced dials and accepts only MSE with an RC4 payload;
  disabled never speaks MSE.
  --transport tcp|utp|both (seed, leech): tcp (the default, as before) dials and accepts
  TCP only; utp dials and accepts uTP only (on the UDP socket bound to the PORT below);
  both enables the two, and then libtorrent dials uTP first and falls back to TCP.
  --no-pex (seed, leech) runs the session without the ut_pex plugin: this peer neither
  sends nor reads PEX (ut_metadata and smart_ban stay), so it learns peers only from
  --peer and from peers that dial it.
  --peer addresses are dialled every 2 s until reached (connected once); a
  reached peer is dialled again only while we are incomplete with no peer at all.

Output on stdout (line-buffered, machine-readable):
  PORT 41234                      once the listen socket is up (also --port-file)
  STATUS progress=0.5300 state=downloading peers=2 down=123456 up=0   every second
  SUMMARY seconds=1.9 bytes=N MBps=105.0   just before DONE (time since added)
  DONE                            once the torrent is complete
  PEER 127.0.0.1:6881 dir=out src=pex,tracker client=NAME   with --print-peers, once per
      connection seen: dir=out when we dialled it (the address is then its listen address),
      dir=in when it dialled us; src lists how we learned of it (tracker, dht, pex, lsd,
      resume, incoming -- libtorrent's peer_info.source); NAME may contain spaces.
  TRANSPORT 127.0.0.1:6881 dir=out transport=utp   with --print-peers, right after each PEER
      line: the same connection's transport, tcp or utp (peer_info.flags bit utp_socket).
Exit codes: 0 ok, 2 error (message on stderr), 3 --timeout expired.
"""

import argparse
import os
import signal
import sys
import time

try:
    import libtorrent as lt
except ImportError as exc:  # pragma: no cover - environment problem
    sys.stderr.write(
        "lt_peer.py: cannot import libtorrent (%s); run with /usr/bin/python3 "
        "and install python3-libtorrent\n" % exc
    )
    sys.exit(2)

EXIT_OK = 0
ENCRYPTION_CHOICES = ("default", "forced", "disabled")
# "tcp" is the default: it is what this script always did (uTP off).
TRANSPORT_CHOICES = ("tcp", "utp", "both")
EXIT_ERROR = 2
EXIT_TIMEOUT = 3

KEEP_CHOICES = ["all", "even", "odd", "first-half", "second-half"]

# How often --peer addresses are dialled until a connection to them exists.
PEER_RETRY_SECONDS = 2.0


class PeerError(Exception):
    """A user-facing error: printed to stderr, exit code 2."""


# --------------------------------------------------------------------------- session


def session_settings(upload_limit=0, encryption="default", transport="tcp"):
    """Settings for a loopback-only, fast libtorrent session (TCP only unless `transport`).

    encryption: "default" dials plaintext and accepts plaintext or MSE (either payload);
    "forced" dials and accepts only MSE with an RC4 payload; "disabled" never speaks MSE.

    transport: "tcp" (uTP off, as this script always ran), "utp" (TCP off both ways: every
    connection, dialled or accepted, is uTP) or "both" (libtorrent's own default).

    A rate-limited seeder keeps libtorrent's default send buffer (about 0.5 MB): the 8 MB
    buffer that makes loopback transfers fast would, at a few hundred kB/s, hold tens of
    seconds of already-read blocks that no CANCEL can take back -- not what a real slow peer
    looks like.
    """
    settings = {
        # Isolation: nothing may leave 127.0.0.1.
        "enable_dht": False,
        "enable_lsd": False,
        "enable_upnp": False,
        "enable_natpmp": False,
        "dht_bootstrap_nodes": "",
        "listen_interfaces": "127.0.0.1:0",
        "outgoing_interfaces": "127.0.0.1",
        "listen_system_port_fallback": False,
        # Several peers share 127.0.0.1; re-dial quickly after a close.
        "allow_multiple_connections_per_ip": True,
        "min_reconnect_time": 1,
        # Trackers on 127.0.0.1 must be allowed.
        "ssrf_mitigation": False,
        # Plaintext only when dialling; accept both when dialled.
        "out_enc_policy": int(lt.enc_policy.pe_disabled),
        "in_enc_policy": int(lt.enc_policy.pe_enabled),
        "allowed_enc_level": int(lt.enc_level.both),
        "prefer_rc4": False,
        # TCP only by default (uTP on loopback is slow and erratic); see --transport.
        "enable_incoming_tcp": transport in ("tcp", "both"),
        "enable_outgoing_tcp": transport in ("tcp", "both"),
        "enable_incoming_utp": transport in ("utp", "both"),
        "enable_outgoing_utp": transport in ("utp", "both"),
        # Speed on loopback.
        "send_buffer_watermark": 8 * 1024 * 1024,
        "send_buffer_low_watermark": 1024 * 1024,
        "send_buffer_watermark_factor": 150,
        "max_queued_disk_bytes": 32 * 1024 * 1024,
        "cache_size": 8192,  # 16 KiB blocks; ignored by 2.0's mmap storage
        "connections_limit": 500,
        "max_out_request_queue": 1500,
        "max_allowed_in_request_queue": 4000,
        "unchoke_slots_limit": 32,
        "upload_rate_limit": int(upload_limit),
        "download_rate_limit": 0,
        # Only what we read.
        "alert_mask": int(
            lt.alert.category_t.error_notification
            | lt.alert.category_t.status_notification
            | lt.alert.category_t.storage_notification
            | lt.alert.category_t.peer_notification
            | lt.alert.category_t.connect_notification
        ),
    }
    if encryption == "forced":
        settings.update({
            "out_enc_policy": int(lt.enc_policy.pe_forced),
            "in_enc_policy": int(lt.enc_policy.pe_forced),
            "allowed_enc_level": int(lt.enc_level.rc4),
            "prefer_rc4": True,
        })
    elif encryption == "disabled":
        settings.update({
            "out_enc_policy": int(lt.enc_policy.pe_disabled),
            "in_enc_policy": int(lt.enc_policy.pe_disabled),
        })
    if upload_limit:
        for key in ("send_buffer_watermark", "send_buffer_low_watermark", "send_buffer_watermark_factor"):
            del settings[key]
    return settings


def open_session(upload_limit=0, pex=True, encryption="default", transport="tcp"):
    """Create the session (all settings in the constructor) and wait for its port.

    pex=False: no default plugins (the constructor flags 0), then ut_metadata and smart_ban
    added back by hand, so ut_pex is the only default plugin missing.
    """
    if pex:
        ses = lt.session(session_settings(upload_limit, encryption, transport))
    else:
        ses = lt.session(session_settings(upload_limit, encryption, transport), 0)
        ses.add_extension("ut_metadata")
        ses.add_extension("smart_ban")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        port = ses.listen_port()
        if port:
            return ses, port
        drain_alerts(ses)
        time.sleep(0.05)
    raise PeerError("libtorrent did not open a listen socket on 127.0.0.1")


def write_port_file(path, port):
    """Write the port atomically (tmp + rename) so a poller never sees half a file."""
    tmp = "%s.tmp.%d" % (path, os.getpid())
    with open(tmp, "w") as f:
        f.write("%d\n" % port)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


class Events:
    """What the run loop learns from alerts."""

    verbose = False
    # --peer addresses we have reached: seen connected, or closed by libtorrent as
    # a duplicate of a connection that peer opened to us, or as "upload to upload"
    # (both sides complete). A reached peer is dialled again only while we are
    # incomplete and have no connection at all.
    reached = set()


def drain_alerts(ses):
    """Pop pending alerts; raise PeerError on torrent/file errors."""
    for a in ses.pop_alerts():
        if isinstance(a, (lt.torrent_error_alert, lt.file_error_alert, lt.listen_failed_alert)):
            raise PeerError("libtorrent: %s" % a.message())
        if isinstance(a, lt.peer_disconnected_alert):
            msg = a.message().lower()
            if "duplicate" in msg or "upload to upload" in msg:
                try:
                    Events.reached.add((str(a.ip[0]), int(a.ip[1])))
                except (TypeError, IndexError, ValueError):
                    pass
        if Events.verbose and isinstance(
            a, (lt.peer_connect_alert, lt.peer_disconnected_alert, lt.peer_error_alert,
                lt.incoming_connection_alert, lt.hash_failed_alert)
        ):
            sys.stderr.write("alert: %s\n" % a.message())


def parse_hostport(text):
    """'HOST:PORT' -> (host, port)."""
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise PeerError("bad --peer %r (want HOST:PORT)" % text)
    return host.strip("[]"), int(port)


def load_torrent(path):
    try:
        return lt.torrent_info(path)
    except RuntimeError as exc:
        raise PeerError("cannot load torrent %s: %s" % (path, exc))


# --------------------------------------------------------------------------- run loop


class Stop:
    """Set by SIGTERM/SIGINT; the run loop exits cleanly with code 0."""

    requested = False

    @classmethod
    def install(cls):
        def handler(_signum, _frame):
            cls.requested = True

        signal.signal(signal.SIGTERM, handler)
        signal.signal(signal.SIGINT, handler)


def emit(line):
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def is_complete(st):
    return st.state in (lt.torrent_status.seeding, lt.torrent_status.finished)


def connected_addresses(handle):
    """Set of (ip, port) of the peers we currently have a connection with."""
    out = set()
    try:
        for p in handle.get_peer_info():
            out.add((str(p.ip[0]), int(p.ip[1])))
    except RuntimeError:
        pass
    return out


# peer_info.flags bit for "this connection is a uTP socket" (libtorrent 2.0's
# peer_info::utp_socket = 17_bit; the 2.0.8 Python binding does not export the name).
UTP_SOCKET = getattr(lt.peer_info, "utp_socket", 1 << 17)

PEER_SOURCES = (
    (1, "tracker"), (2, "dht"), (4, "pex"), (8, "lsd"), (16, "resume"), (32, "incoming"),
)


def print_new_peers(handle, printed):
    """Emit PEER and TRANSPORT lines for each connection not printed yet (keyed by address
    and direction)."""
    try:
        infos = handle.get_peer_info()
    except RuntimeError:
        return
    for p in infos:
        if p.flags & lt.peer_info.connecting or p.flags & lt.peer_info.handshake:
            continue
        out = bool(p.flags & lt.peer_info.local_connection)
        key = (str(p.ip[0]), int(p.ip[1]), out)
        if key in printed:
            continue
        printed.add(key)
        src = ",".join(name for bit, name in PEER_SOURCES if p.source & bit) or "none"
        client = p.client if isinstance(p.client, str) else repr(p.client)
        emit("PEER %s:%d dir=%s src=%s client=%s" % (
            key[0], key[1], "out" if out else "in", src, client))
        # A separate line: PEER's client= is free text to the end of the line.
        emit("TRANSPORT %s:%d dir=%s transport=%s" % (
            key[0], key[1], "out" if out else "in", "utp" if p.flags & UTP_SOCKET else "tcp"))


def run_torrent(args, atp, stop_after_done, timeout):
    """Add the torrent, dial --peer addresses, print STATUS/DONE; return an exit code."""
    Stop.install()
    Events.verbose = args.verbose
    peers = [parse_hostport(p) for p in (args.peer or [])]
    ses, port = open_session(getattr(args, "upload_limit", 0) or 0,
                             pex=not getattr(args, "no_pex", False),
                             encryption=getattr(args, "encryption", "default"),
                             transport=getattr(args, "transport", "tcp"))
    printed_peers = set()
    emit("PORT %d" % port)
    if args.port_file:
        write_port_file(args.port_file, port)

    atp.save_path = os.path.abspath(args.save)
    # Start at once: no queueing by the auto-manager, not paused.
    atp.flags &= ~lt.torrent_flags.auto_managed
    atp.flags &= ~lt.torrent_flags.paused
    handle = ses.add_torrent(atp)
    if getattr(args, "upload_limit", 0):
        # Peers on 127.0.0.1 are in libtorrent's "local" peer class, which the
        # session-wide limit does not cover; the per-torrent limit does.
        handle.set_upload_limit(int(args.upload_limit))

    started = time.monotonic()
    next_dial = 0.0
    next_status = 0.0
    done_printed = False
    code = EXIT_OK
    while not Stop.requested:
        now = time.monotonic()
        drain_alerts(ses)
        st = handle.status()

        if peers and now >= next_dial:
            have = connected_addresses(handle)
            Events.reached.update(hp for hp in peers if hp in have)
            if not have and not is_complete(st):
                Events.reached.clear()
            for hp in peers:
                if hp not in have and hp not in Events.reached:
                    # connect_peer(endpoint, source=0, flags=0xd): flags are pex_flags
                    # (pex_encryption | pex_utp | pex_holepunch). The endpoint is a TCP
                    # endpoint in name only. libtorrent 2.0.8 torrent::connect_to_peer dials
                    # uTP when enable_outgoing_utp is on and (enable_outgoing_tcp is off, or
                    # the peer is believed to support uTP -- assumed for every new peer, and
                    # pex_utp says so too); otherwise TCP, or, when outgoing TCP is off too,
                    # it drops the peer. So --transport utp dials this address over uTP (to
                    # the peer's UDP socket on its listen port), tcp dials TCP, and both
                    # tries uTP first and redials over TCP if the uTP connect fails.
                    try:
                        handle.connect_peer(hp)
                    except RuntimeError as exc:
                        sys.stderr.write("connect_peer %s:%d: %s\n" % (hp[0], hp[1], exc))
            next_dial = now + PEER_RETRY_SECONDS

        if getattr(args, "print_peers", False):
            print_new_peers(handle, printed_peers)

        if now >= next_status:
            emit(
                "STATUS progress=%.4f state=%s peers=%d down=%d up=%d"
                % (st.progress, st.state, st.num_peers, st.download_rate, st.upload_rate)
            )
            next_status = now + 1.0

        if not done_printed and st.has_metadata and is_complete(st):
            emit(
                "STATUS progress=%.4f state=%s peers=%d down=%d up=%d"
                % (st.progress, st.state, st.num_peers, st.download_rate, st.upload_rate)
            )
            secs = now - started
            emit("SUMMARY seconds=%.3f bytes=%d MBps=%.1f" % (
                secs, st.total_wanted, st.total_wanted / 1e6 / secs if secs > 0 else 0.0))
            emit("DONE")
            done_printed = True
            if stop_after_done:
                break

        if timeout and not done_printed and now - started > timeout:
            sys.stderr.write("lt_peer.py: timeout after %.0f s (progress %.4f)\n" % (timeout, st.progress))
            code = EXIT_TIMEOUT
            break
        time.sleep(0.1)

    # Clean shutdown: make sure written blocks reach the files before we exit.
    try:
        handle.flush_cache()
        ses.pause()
    except RuntimeError:
        pass
    del handle
    del ses
    return code


# --------------------------------------------------------------------------- subcommands


def cmd_create(args):
    path = os.path.abspath(args.path)
    if not os.path.exists(path):
        raise PeerError("no such path: %s" % path)
    fs = lt.file_storage()
    lt.add_files(fs, path)
    if fs.num_files() == 0:
        raise PeerError("no files under %s" % path)
    ct = lt.create_torrent(fs, args.piece_size, flags=lt.create_torrent.v1_only)
    if args.tracker:
        ct.add_tracker(args.tracker)
    ct.set_creator("peercdn lt_peer.py")
    lt.set_piece_hashes(ct, os.path.dirname(path))
    data = lt.bencode(ct.generate())
    tmp = args.out + ".tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, args.out)
    ti = lt.torrent_info(args.out)
    emit(str(ti.info_hashes().v1))
    return EXIT_OK


def kept(piece, num_pieces, keep):
    """Does `corrupt --keep KEEP` keep this piece?"""
    half = num_pieces // 2
    return {
        "all": True,
        "even": piece % 2 == 0,
        "odd": piece % 2 == 1,
        "first-half": piece < half,
        "second-half": piece >= half,
    }[keep]


def corrupt(ti, save, keep):
    """Zero every piece not kept; return how many pieces were zeroed."""
    fs = ti.files()
    zeroed = 0
    for piece in range(ti.num_pieces()):
        if kept(piece, ti.num_pieces(), keep):
            continue
        for sl in ti.map_block(piece, 0, ti.piece_size(piece)):
            if fs.file_flags(sl.file_index) & lt.file_storage.flag_pad_file:
                continue
            path = os.path.join(save, fs.file_path(sl.file_index))
            try:
                with open(path, "r+b") as f:
                    f.seek(sl.offset)
                    f.write(b"\0" * sl.size)
            except FileNotFoundError:
                continue  # a missing file is already "not had"
        zeroed += 1
    return zeroed


def cmd_corrupt(args):
    ti = load_torrent(args.torrent)
    n = corrupt(ti, os.path.abspath(args.save), args.keep)
    emit("CORRUPTED %d of %d pieces" % (n, ti.num_pieces()))
    return EXIT_OK


def cmd_seed(args):
    ti = load_torrent(args.torrent)
    if args.pieces != "all":
        corrupt(ti, os.path.abspath(args.save), args.pieces)
    atp = lt.add_torrent_params()
    atp.ti = ti
    # No resume data: libtorrent hash-checks whatever is in --save, seeds the
    # pieces that verify and downloads the others from peers.
    return run_torrent(args, atp, stop_after_done=False, timeout=0)


def cmd_leech(args):
    if args.torrent:
        atp = lt.add_torrent_params()
        atp.ti = load_torrent(args.torrent)
    else:
        try:
            atp = lt.parse_magnet_uri(args.magnet)
        except RuntimeError as exc:
            raise PeerError("bad magnet URI: %s" % exc)
    os.makedirs(args.save, exist_ok=True)
    return run_torrent(args, atp, stop_after_done=not args.seed_after, timeout=args.timeout)


# --------------------------------------------------------------------------- CLI


def parse_args(argv):
    p = argparse.ArgumentParser(prog="lt_peer.py", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)

    c = sub.add_parser("create", help="make a v1-only .torrent; print its info hash")
    c.add_argument("--path", required=True)
    c.add_argument("--out", required=True)
    c.add_argument("--piece-size", type=int, default=0, help="bytes; 0 = libtorrent's choice")
    c.add_argument("--tracker", help="announce URL")

    k = sub.add_parser("corrupt", help="zero the pieces not kept")
    k.add_argument("--torrent", required=True)
    k.add_argument("--save", required=True)
    k.add_argument("--keep", required=True, choices=KEEP_CHOICES[1:])

    s = sub.add_parser("seed", help="seed (and complete) a torrent until killed")
    s.add_argument("--torrent", required=True)
    s.add_argument("--save", required=True)
    s.add_argument("--port-file")
    s.add_argument("--upload-limit", type=int, default=0, help="bytes/s; 0 = unlimited")
    s.add_argument("--pieces", choices=KEEP_CHOICES, default="all",
                   help="zero the other pieces first (see corrupt)")
    s.add_argument("--peer", action="append", default=[], metavar="HOST:PORT")
    s.add_argument("--verbose", action="store_true", help="peer connect/disconnect alerts on stderr")
    s.add_argument("--print-peers", action="store_true", help="a PEER line per new connection")
    s.add_argument("--no-pex", action="store_true", help="run without the ut_pex plugin")
    s.add_argument("--encryption", choices=ENCRYPTION_CHOICES, default="default",
                   help="MSE/PE policy (see session_settings)")
    s.add_argument("--transport", choices=TRANSPORT_CHOICES, default="tcp",
                   help="peer transport(s), dialled and accepted (default tcp)")

    l = sub.add_parser("leech", help="download a torrent")
    src = l.add_mutually_exclusive_group(required=True)
    src.add_argument("--torrent")
    src.add_argument("--magnet")
    l.add_argument("--save", required=True)
    l.add_argument("--port-file")
    l.add_argument("--peer", action="append", default=[], metavar="HOST:PORT")
    l.add_argument("--seed-after", action="store_true", help="keep seeding after DONE")
    l.add_argument("--timeout", type=float, default=0, help="seconds; exit 3 when exceeded")
    l.add_argument("--verbose", action="store_true", help="peer connect/disconnect alerts on stderr")
    l.add_argument("--print-peers", action="store_true", help="a PEER line per new connection")
    l.add_argument("--no-pex", action="store_true", help="run without the ut_pex plugin")
    l.add_argument("--encryption", choices=ENCRYPTION_CHOICES, default="default",
                   help="MSE/PE policy (see session_settings)")
    l.add_argument("--transport", choices=TRANSPORT_CHOICES, default="tcp",
                   help="peer transport(s), dialled and accepted (default tcp)")
    return p.parse_args(argv)


def main(argv):
    args = parse_args(argv)
    if not hasattr(args, "verbose"):
        args.verbose = False
    handlers = {"create": cmd_create, "corrupt": cmd_corrupt, "seed": cmd_seed, "leech": cmd_leech}
    try:
        return handlers[args.cmd](args)
    except PeerError as exc:
        sys.stderr.write("lt_peer.py: %s\n" % exc)
        return EXIT_ERROR
    except (OSError, RuntimeError) as exc:
        sys.stderr.write("lt_peer.py: %s: %s\n" % (type(exc).__name__, exc))
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
