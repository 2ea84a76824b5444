//! The hand-written OpenAPI 3.0 document served at `/api/v1/openapi.json`. A test in
//! `tests/api.rs` calls every path listed here, so the document and the routes stay in step.

use serde_json::{json, Value};

/// The OpenAPI document.
pub fn document() -> Value {
    let id_param = json!({
        "name": "id", "in": "path", "required": true,
        "description": "Content ID: 40 hex characters (32 base32 and acestream:// accepted).",
        "schema": { "type": "string" }
    });
    let error = json!({ "$ref": "#/components/responses/Error" });
    let torrent_ok = |desc: &str| {
        json!({
            "description": desc,
            "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Torrent" } } }
        })
    };
    let ace_session = json!([
        { "name": "infohash", "in": "path", "required": true, "schema": { "type": "string" } },
        { "name": "session", "in": "path", "required": true, "schema": { "type": "string" } }
    ]);
    json!({
        "openapi": "3.0.3",
        "info": {
            "title": "peercdn engine API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "The engine's HTTP API: Ace Stream compatible streaming routes, \
                peercdn's own /api/v1, and Prometheus metrics. When an access token is set, \
                every request carries ?token=T or Authorization: Bearer T. The JSON answers \
                of the Ace routes (/ace/..., /webui/...) follow Ace's conventions: an error is \
                a 200 with the message in `error` and the status it stands for in the \
                X-Peercdn-Status header, and format=jsonp&callback=NAME wraps the answer in \
                a call to NAME; stream answers keep their HTTP status."
        },
        "paths": {
            "/api/v1/torrents": {
                "get": {
                    "summary": "List running torrents",
                    "responses": { "200": {
                        "description": "Torrents",
                        "content": { "application/json": { "schema": {
                            "type": "object",
                            "properties": { "torrents": { "type": "array",
                                "items": { "$ref": "#/components/schemas/Torrent" } } }
                        } } }
                    } }
                },
                "post": {
                    "summary": "Add a torrent (or return the running one)",
                    "requestBody": { "required": true, "content": {
                        "application/json": { "schema": { "$ref": "#/components/schemas/AddRequest" } },
                        "application/x-bittorrent": { "schema": { "type": "string", "format": "binary" } }
                    } },
                    "responses": {
                        "201": torrent_ok("The torrent"),
                        "400": error, "502": error
                    }
                }
            },
            "/api/v1/torrents/{id}": {
                "parameters": [id_param],
                "get": {
                    "summary": "A torrent with its files (null until metadata is known)",
                    "responses": { "200": torrent_ok("The torrent"), "400": error, "404": error }
                },
                "delete": {
                    "summary": "Stop a torrent",
                    "parameters": [{ "name": "delete_data", "in": "query",
                        "schema": { "type": "boolean", "default": false } }],
                    "responses": { "200": { "description": "Removed" }, "400": error, "404": error }
                }
            },
            "/api/v1/torrents/{id}/pause": {
                "parameters": [id_param],
                "post": { "summary": "Pause", "responses": { "200": torrent_ok("The torrent"), "404": error } }
            },
            "/api/v1/torrents/{id}/resume": {
                "parameters": [id_param],
                "post": { "summary": "Resume", "responses": { "200": torrent_ok("The torrent"), "404": error } }
            },
            "/api/v1/torrents/{id}/limits": {
                "parameters": [id_param],
                "post": {
                    "summary": "Set this torrent's rate limits while it runs (bytes/s, 0: none; a missing field keeps its limit)",
                    "requestBody": { "required": true, "content": { "application/json": { "schema": {
                        "type": "object", "additionalProperties": false,
                        "properties": {
                            "download_limit": { "type": "integer", "minimum": 0 },
                            "upload_limit": { "type": "integer", "minimum": 0 }
                        }
                    } } } },
                    "responses": { "200": torrent_ok("The torrent"), "400": error, "404": error }
                }
            },
            "/api/v1/live": {
                "get": {
                    "summary": "List live streams",
                    "responses": { "200": {
                        "description": "Live streams",
                        "content": { "application/json": { "schema": {
                            "type": "object",
                            "properties": { "live": { "type": "array",
                                "items": { "$ref": "#/components/schemas/Live" } } }
                        } } }
                    } }
                }
            },
            "/api/v1/live/{id}": {
                "parameters": [id_param],
                "get": {
                    "summary": "A live stream",
                    "responses": {
                        "200": { "description": "The stream", "content": { "application/json": {
                            "schema": { "$ref": "#/components/schemas/Live" } } } },
                        "400": error, "404": error
                    }
                }
            },
            "/api/v1/dht": {
                "get": {
                    "summary": "The mainline DHT node: routing table, lookups, announces",
                    "responses": { "200": { "description": "The DHT figures, or {\"enabled\": false}",
                        "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Dht" } } } } }
                }
            },
            "/api/v1/node": {
                "get": {
                    "summary": "How peers reach this node: listen address, encryption policy, uTP, the router port mapping (UPnP) and the incoming connections so far",
                    "responses": { "200": { "description": "The node's reach",
                        "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Node" } } } } }
                }
            },
            "/api/v1/receipts": {
                "post": {
                    "summary": "The broadcaster's collector: signed receipts (a bencoded list of at most 64), \
                        judged by its ledger; no access token needed",
                    "requestBody": { "content": { "application/x-bittorrent": { "schema": { "type": "string", "format": "binary" } } } },
                    "responses": { "200": { "description": "{accepted, duplicate, refused, results: [{status, reason}]}" },
                        "400": error, "429": error, "503": error }
                }
            },
            "/api/v1/ledger": {
                "get": {
                    "summary": "The ledger's report (traffic per uploader, CDN host and viewer; watch time) and the receipt counters",
                    "responses": { "200": { "description": "{report (null without a ledger), error, receipts: {signed, sent_bytes, \
                        received, accepted, duplicate, refused: {reason: n}, dropped}}" } }
                }
            },
            "/api/v1/channels": {
                "get": {
                    "summary": "Channels on the DHT: this node's own (its records as a torrent, a BEP 44 head \
                        under its key) and the publishers it follows",
                    "responses": { "200": { "description": "{enabled, key, own: {seq, info_hash, records, published} or null, \
                        subscriptions: [{publisher, seq, info_hash, records, checked, error}]}" } }
                }
            },
            "/api/v1/channels/{publisher}": {
                "parameters": [ { "name": "publisher", "in": "path", "required": true,
                    "description": "Publisher key, 64 hex", "schema": { "type": "string" } } ],
                "post": {
                    "summary": "Follow a publisher's channel: its records come through the DHT and its channel torrent",
                    "responses": { "200": { "description": "{subscribed}" }, "400": error }
                },
                "delete": {
                    "summary": "Stop following (the records already taken stay)",
                    "responses": { "200": { "description": "{unsubscribed}" }, "400": error, "404": error }
                }
            },
            "/api/v1/search": {
                "get": {
                    "summary": "Search: ask up to 20 peers (pc_search), then the catalogue's signed \
                        records ranked by text match (title, tags, description), availability \
                        and freshness, then content this engine holds that no record describes \
                        (matched by name)",
                    "parameters": [
                        { "name": "query", "in": "query", "description": "Words, all of which must match; empty lists everything",
                          "schema": { "type": "string" } },
                        { "name": "kind", "in": "query", "schema": { "type": "string", "enum": ["vod", "live"] } },
                        { "name": "category", "in": "query", "schema": { "type": "string" } },
                        { "name": "lang", "in": "query", "schema": { "type": "string" } },
                        { "name": "offset", "in": "query", "schema": { "type": "integer", "minimum": 0 } },
                        { "name": "limit", "in": "query",
                          "schema": { "type": "integer", "minimum": 1, "maximum": 200, "default": 20 } },
                        { "name": "local", "in": "query", "description": "1: do not ask peers",
                          "schema": { "type": "string" } },
                        { "name": "wait_ms", "in": "query", "description": "How long to wait for peers' answers (at most 5000)",
                          "schema": { "type": "integer", "minimum": 0, "default": 1000 } },
                        { "name": "stream", "in": "query", "description": "1: newline-delimited JSON (application/x-ndjson), \
                            one object per line with a `phase`: `local` at once, `peers` as more peers answer, `final`",
                          "schema": { "type": "string" } }
                    ],
                    "responses": {
                        "200": { "description": "Results, best first", "content": { "application/json": {
                            "schema": { "$ref": "#/components/schemas/SearchResults" } } } },
                        "400": error
                    }
                }
            },
            "/api/v1/openapi.json": {
                "get": { "summary": "This document", "responses": { "200": { "description": "OpenAPI 3.0" } } }
            },
            "/metrics": {
                "get": { "summary": "Prometheus metrics", "responses": { "200": {
                    "description": "Text exposition format",
                    "content": { "text/plain": { "schema": { "type": "string" } } }
                } } }
            },
            "/ace/getstream": {
                "get": {
                    "summary": "Ace Stream compatible progressive stream (HEAD too)",
                    "parameters": [
                        { "name": "content_id", "in": "query", "schema": { "type": "string" } },
                        { "name": "id", "in": "query", "schema": { "type": "string" } },
                        { "name": "infohash", "in": "query", "schema": { "type": "string" } },
                        { "name": "url", "in": "query", "schema": { "type": "string" } },
                        { "name": "magnet", "in": "query", "schema": { "type": "string" } },
                        { "name": "file_index", "in": "query", "schema": { "type": "integer" } },
                        { "name": "pid", "in": "query", "schema": { "type": "string" } },
                        { "name": "format", "in": "query", "schema": { "type": "string", "enum": ["json"] } }
                    ],
                    "responses": {
                        "200": { "description": "The file, or with format=json the playback session" },
                        "206": { "description": "A byte range" },
                        "400": error, "416": { "description": "Range not satisfiable" },
                        "502": error, "504": error
                    }
                }
            },
            "/ace/manifest.m3u8": {
                "get": {
                    "summary": "HLS media playlist: a live stream's (low-latency: keyframe segments, pieces as parts, blocking reload), or a torrent's MPEG-TS file's (VOD); 400 for other containers",
                    "parameters": [
                        { "name": "content_id", "in": "query", "schema": { "type": "string" } },
                        { "name": "id", "in": "query", "schema": { "type": "string" } },
                        { "name": "infohash", "in": "query", "schema": { "type": "string" } },
                        { "name": "url", "in": "query", "schema": { "type": "string" } },
                        { "name": "magnet", "in": "query", "schema": { "type": "string" } },
                        { "name": "pid", "in": "query", "schema": { "type": "string" } },
                        { "name": "file_index", "in": "query", "schema": { "type": "integer" } },
                        { "name": "_HLS_msn", "in": "query", "schema": { "type": "integer" } },
                        { "name": "_HLS_part", "in": "query", "schema": { "type": "integer" } },
                        { "name": "format", "in": "query", "schema": { "type": "string", "enum": ["json"] } }
                    ],
                    "responses": {
                        "200": { "description": "application/vnd.apple.mpegurl, or with format=json the playback session",
                            "content": { "application/vnd.apple.mpegurl": { "schema": { "type": "string" } } } },
                        "400": error, "502": error, "504": error
                    }
                }
            },
            "/ace/l/{id}/{segment}": {
                "parameters": [id_param,
                    { "name": "segment", "in": "path", "required": true,
                      "description": "sNUMBER.ts: a segment (pieces from a keyframe); INDEX.ts: a part (one piece)", "schema": { "type": "string" } }],
                "get": { "summary": "HLS segment or part of a live stream",
                    "parameters": [{ "name": "pid", "in": "query", "schema": { "type": "string" } }],
                    "responses": { "200": { "description": "video/mp2t" }, "404": error, "503": error } }
            },
            "/ace/v/{infohash}/{file}/{segment}": {
                "parameters": [
                    { "name": "infohash", "in": "path", "required": true, "schema": { "type": "string" } },
                    { "name": "file", "in": "path", "required": true, "schema": { "type": "integer" } },
                    { "name": "segment", "in": "path", "required": true,
                      "description": "N.ts", "schema": { "type": "string" } }],
                "get": { "summary": "HLS segment of a torrent's MPEG-TS file (from a keyframe; streamed while it downloads)",
                    "responses": { "200": { "description": "video/mp2t" }, "404": error } }
            },
            "/ace/r/{infohash}/{session}": {
                "parameters": ace_session,
                "get": { "summary": "Playback URL of a playback session",
                    "responses": { "200": { "description": "The file" }, "206": { "description": "A byte range" }, "404": error } }
            },
            "/ace/stat/{infohash}/{session}": {
                "parameters": ace_session,
                "get": { "summary": "Playback session statistics",
                    "responses": { "200": { "description": "Status" }, "404": error } }
            },
            "/ace/cmd/{infohash}/{session}": {
                "parameters": ace_session,
                "get": { "summary": "Playback session command (method=stop)",
                    "parameters": [{ "name": "method", "in": "query", "required": true,
                        "schema": { "type": "string", "enum": ["stop"] } }],
                    "responses": { "200": { "description": "ok" }, "400": error, "404": error } }
            },
            "/webui/api/service": {
                "get": { "summary": "Ace API level implemented (method=get_version): result.version \
                    and result.code as Ace engines report them, result.peercdn_version",
                    "parameters": [{ "name": "method", "in": "query", "required": true,
                        "schema": { "type": "string", "enum": ["get_version"] } }],
                    "responses": { "200": { "description": "Version" }, "400": error } }
            },
            "/server/api": {
                "get": { "summary": "Ace's server API: get_media_files (files by index), \
                    get_content_id, get_api_access_token, search (as /search); \
                    answers {\"result\": ..., \"error\": null}",
                    "parameters": [
                        { "name": "method", "in": "query", "required": true,
                          "schema": { "type": "string", "enum": ["get_media_files",
                            "get_content_id", "get_api_access_token", "search"] } },
                        { "name": "infohash", "in": "query", "schema": { "type": "string" } },
                        { "name": "query", "in": "query", "schema": { "type": "string" } }
                    ],
                    "responses": { "200": { "description": "result or error" } } }
            },
            "/search": {
                "get": { "summary": "Search the catalogue (see /api/v1/search) in Ace's shape: result.results[] with infohash, name, categories, \
                    availability, availability_updated_at, status, bitrate; result.total",
                    "parameters": [
                        { "name": "query", "in": "query", "schema": { "type": "string" } },
                        { "name": "category", "in": "query", "schema": { "type": "string" } },
                        { "name": "page", "in": "query", "schema": { "type": "integer", "minimum": 0 } },
                        { "name": "page_size", "in": "query",
                          "schema": { "type": "integer", "minimum": 1, "maximum": 200 } },
                        { "name": "group_by_channels", "in": "query", "schema": { "type": "string" } },
                        { "name": "show_epg", "in": "query", "description": "1: each item gets `epg` (null: records carry no programme guide)",
                          "schema": { "type": "string" } }
                    ],
                    "responses": { "200": { "description": "results" } } }
            }
        },
        "components": {
            "schemas": {
                "Wires": {
                    "type": "object",
                    "description": "Connected peers by how their bytes travel: plain BitTorrent, MSE/PE handshake with a plain payload, or RC4 throughout (these three add up to all); and how many of them over uTP (the rest over TCP).",
                    "properties": {
                        "plain": { "type": "integer" },
                        "obfuscated": { "type": "integer" },
                        "rc4": { "type": "integer" },
                        "utp": { "type": "integer" },
                        "holepunched": { "type": "integer", "description": "Connections that came of a BEP 55 introduction (holepunched, over uTP)." }
                    }
                },
                "SearchResults": {
                    "type": "object",
                    "properties": {
                        "total": { "type": "integer", "description": "Matches in all (before offset and limit)" },
                        "peers_asked": { "type": "integer", "description": "Peers the query went to (pc_search)" },
                        "peers_answered": { "type": "integer", "description": "Of those, how many answered in time" },
                        "results": { "type": "array", "items": {
                            "type": "object",
                            "properties": {
                                "id": { "type": "string", "description": "Content ID (40 hex)" },
                                "name": { "type": "string" },
                                "availability": { "type": "number", "description": "As Ace gives it: 1 when held here in full, the share held, 0 when unknown" },
                                "updated": { "type": "integer", "description": "Unix time the availability was last known" },
                                "bitrate": { "type": "integer", "nullable": true, "description": "Bytes per second: measured for a live stream held here, else the record's" },
                                "record": { "nullable": true, "$ref": "#/components/schemas/Record" }
                            }
                        } }
                    }
                },
                "Record": {
                    "type": "object",
                    "description": "A catalogue record, signed by its publisher's ed25519 key",
                    "properties": {
                        "kind": { "type": "string", "enum": ["vod", "live"] },
                        "title": { "type": "string" },
                        "description": { "type": "string" },
                        "tags": { "type": "array", "items": { "type": "string" } },
                        "category": { "type": "string" },
                        "lang": { "type": "string" },
                        "country": { "type": "string" },
                        "size": { "type": "integer", "description": "Bytes (VoD)" },
                        "bitrate": { "type": "integer", "description": "Bits per second (live)" },
                        "files": { "type": "integer" },
                        "created": { "type": "integer", "description": "Unix time signed" },
                        "publisher": { "type": "string", "description": "Publisher key, 64 hex" },
                        "seq": { "type": "integer", "description": "Version: a higher one replaces" },
                        "own": { "type": "boolean", "description": "Signed by this node" },
                        "peers_seen": { "type": "integer", "description": "Peers seen holding the content" },
                        "signed": { "type": "string", "description": "The bencoded signed record, hex: verify it yourself" }
                    }
                },
                "Torrent": {
                    "type": "object",
                    "properties": {
                        "id": { "type": "string" },
                        "name": { "type": "string", "nullable": true },
                        "state": { "type": "string", "enum": ["fetching_metadata", "checking",
                            "downloading", "seeding", "paused", "error"] },
                        "error": { "type": "string", "nullable": true },
                        "error_kind": { "type": "string", "nullable": true, "enum": ["disk_full", "io", "missing", "layout", null], "description": "What kind of storage error stopped the torrent: disk_full means free space, then resume" },
                        "progress": { "type": "number", "minimum": 0, "maximum": 1 },
                        "total_length": { "type": "integer" },
                        "have_bytes": { "type": "integer" },
                        "pieces_have": { "type": "integer" },
                        "pieces_total": { "type": "integer" },
                        "downloaded": { "type": "integer" },
                        "uploaded": { "type": "integer" },
                        "down_rate": { "type": "integer", "description": "bytes/s" },
                        "up_rate": { "type": "integer", "description": "bytes/s" },
                        "peers": { "type": "integer" },
                        "peers_by_wire": { "$ref": "#/components/schemas/Wires" },
                        "hash_failures": { "type": "integer" },
                        "downloaded_p2p": { "type": "integer", "description": "Payload bytes from peers." },
                        "downloaded_http": { "type": "integer", "description": "Payload bytes from web seeds (HTTP/CDN)." },
                        "download_limit": { "type": "integer", "description": "This torrent's own download limit, bytes/s (0: none)." },
                        "upload_limit": { "type": "integer", "description": "This torrent's own upload limit, bytes/s (0: none)." },
                        "webseeds": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "properties": {
                                    "url": { "type": "string" },
                                    "downloaded": { "type": "integer" },
                                    "errors": { "type": "integer" }
                                }
                            }
                        },
                        "peer_list": { "type": "array", "description": "Connected peers, busiest first (at most 100).",
                            "items": { "type": "object", "properties": {
                                "addr": { "type": "string" },
                                "client": { "type": "string", "nullable": true },
                                "down_rate": { "type": "integer", "description": "bytes/s from it" },
                                "up_rate": { "type": "integer", "description": "bytes/s to it" },
                                "pieces": { "type": "integer" },
                                "progress": { "type": "number", "minimum": 0, "maximum": 1 },
                                "requests": { "type": "integer", "description": "Our requests in flight to it." },
                                "am_choking": { "type": "boolean" },
                                "peer_choking": { "type": "boolean" },
                                "am_interested": { "type": "boolean" },
                                "downloaded": { "type": "integer", "description": "Payload bytes from it." },
                                "uploaded": { "type": "integer", "description": "Payload bytes to it." },
                                "transport": { "type": "string", "enum": ["tcp", "utp"] },
                                "holepunched": { "type": "boolean", "description": "The connection came of a BEP 55 introduction." },
                                "reachable": { "type": "boolean", "description": "Peers can dial it: we did (not through an introduction), or its extension handshake says so (`pc_reachable`)." },
                                "peer_interested": { "type": "boolean" }
                            } } },
                        "files": { "type": "array", "nullable": true,
                            "items": { "$ref": "#/components/schemas/File" } },
                        "magnet": { "type": "string", "nullable": true }
                    }
                },
                "Live": {
                    "type": "object",
                    "properties": {
                        "id": { "type": "string" },
                        "name": { "type": "string", "nullable": true },
                        "is_source": { "type": "boolean" },
                        "ready": { "type": "boolean", "description": "The descriptor is known." },
                        "peers": { "type": "integer" },
                        "peers_by_wire": { "$ref": "#/components/schemas/Wires" },
                        "p2p_downloaded": { "type": "integer" },
                        "cdn_downloaded": { "type": "integer" },
                        "uploaded": { "type": "integer" },
                        "down_rate": { "type": "integer", "description": "bytes/s" },
                        "up_rate": { "type": "integer", "description": "bytes/s" },
                        "banned": { "type": "integer" },
                        "wasted": { "type": "integer" },
                        "relayed_early": { "type": "integer", "description": "Blocks relayed before their piece was whole (cut-through)." },
                        "first": { "type": "integer", "nullable": true },
                        "last": { "type": "integer", "nullable": true },
                        "edge": { "type": "integer", "nullable": true },
                        "delay_ms": { "type": "integer", "nullable": true },
                        "readers": { "type": "integer" },
                        "buffer_pieces": { "type": "integer" },
                        "buffer_bytes": { "type": "integer" },
                        "piece_duration_ms": { "type": "integer", "nullable": true },
                        "window_s": { "type": "integer", "nullable": true },
                        "cdn": { "type": "array", "nullable": true, "items": { "type": "string" } },
                        "ingest": { "type": "object", "nullable": true, "description": "On the broadcaster: the health of its input.",
                            "properties": {
                                "bitrate_bps": { "type": "integer", "description": "Input bit rate over the last seconds of media." },
                                "bytes_in": { "type": "integer" },
                                "pieces": { "type": "integer" },
                                "keyframes": { "type": "integer" },
                                "dropped_bytes": { "type": "integer", "description": "Garbage between packets, packets before the first keyframe." },
                                "resyncs": { "type": "integer", "description": "Times the packet sync was lost." },
                                "loops": { "type": "integer", "description": "Times a looped input was rewound (each a discontinuity)." }
                            } },
                        "cdn_pieces": { "type": "integer", "description": "Pieces fetched from the CDN and verified." },
                        "cdn_failures": { "type": "integer", "description": "CDN requests that failed (verification included)." },
                        "peer_list": { "type": "array", "description": "Connected peers, busiest first (at most 100).",
                            "items": { "type": "object", "properties": {
                                "addr": { "type": "string" },
                                "client": { "type": "string", "nullable": true },
                                "down_rate": { "type": "integer", "description": "bytes/s from it" },
                                "up_rate": { "type": "integer", "description": "bytes/s to it" },
                                "newest": { "type": "integer", "nullable": true, "description": "Newest piece it announced." },
                                "requests": { "type": "integer", "description": "Our requests in flight to it." },
                                "queued": { "type": "integer", "description": "Its requests queued here." },
                                "downloaded": { "type": "integer", "description": "Payload bytes from it." },
                                "uploaded": { "type": "integer", "description": "Payload bytes to it." },
                                "transport": { "type": "string", "enum": ["tcp", "utp"] },
                                "holepunched": { "type": "boolean", "description": "The connection came of a BEP 55 introduction." },
                                "reachable": { "type": "boolean", "description": "Peers can dial it: we did (not through an introduction), or its extension handshake says so (`pc_reachable`)." },
                                "am_choking": { "type": "boolean" },
                                "peer_choking": { "type": "boolean" }
                            } } }
                    }
                },
                "Node": {
                    "type": "object",
                    "properties": {
                        "listen": { "type": "string", "description": "The peer listen address (`[::]:PORT`: dual stack)." },
                        "port": { "type": "integer", "description": "The peer port, TCP and (uTP) UDP." },
                        "encryption": { "type": "string", "enum": ["prefer", "require", "plaintext"] },
                        "utp": { "type": "object", "properties": {
                            "enabled": { "type": "boolean" },
                            "preferred": { "type": "boolean", "description": "Dials try uTP before TCP." },
                            "connections": { "type": "integer", "description": "uTP connections held (closing ones included)." } } },
                        "reachable": { "type": "boolean", "description": "Peers on the Internet reach this node: its port is mapped, or one already connected from a global address." },
                        "mapping": { "type": "object", "properties": {
                            "state": { "type": "string", "enum": ["off", "searching", "mapped", "unmapped"] },
                            "external": { "type": "string", "description": "When mapped: the address the Internet reaches us at." },
                            "gateway": { "type": "string" },
                            "via": { "type": "string", "enum": ["upnp", "pcp", "nat-pmp"] },
                            "reason": { "type": "string", "description": "When unmapped: why." } } },
                        "incoming": { "type": "object", "description": "Incoming connections whose handshake passed.", "properties": {
                            "tcp": { "type": "integer" }, "utp": { "type": "integer" },
                            "global": { "type": "integer", "description": "From global (not private, loopback or link-local) addresses." } } }
                    }
                },
                "Dht": {
                    "type": "object",
                    "description": "Only `enabled` when the node runs without a DHT.",
                    "properties": {
                        "enabled": { "type": "boolean" },
                        "nodes": { "type": "integer", "description": "Nodes in the routing table." },
                        "bootstrapped": { "type": "boolean",
                            "description": "The routing table has held at least one node." },
                        "port": { "type": "integer", "description": "UDP port." },
                        "lookups": { "type": "integer", "description": "get_peers lookups started." },
                        "lookups_done": { "type": "integer", "description": "get_peers lookups finished." },
                        "peers_found": { "type": "integer", "description": "Peers returned by lookups (summed)." },
                        "announces": { "type": "integer", "description": "announce_peer stored by at least one node." },
                        "announce_failures": { "type": "integer" },
                        "malformed": { "type": "integer", "nullable": true,
                            "description": "Malformed packets dropped; null: the DHT library exposes no counter." }
                    },
                    "required": ["enabled"]
                },
                "File": {
                    "type": "object",
                    "properties": {
                        "index": { "type": "integer" },
                        "path": { "type": "string" },
                        "length": { "type": "integer" },
                        "offset": { "type": "integer" }
                    }
                },
                "AddRequest": {
                    "type": "object",
                    "description": "One of magnet, id or url.",
                    "properties": {
                        "magnet": { "type": "string" },
                        "id": { "type": "string" },
                        "url": { "type": "string", "description": "http(s) URL of a .torrent" },
                        "peers": { "type": "array", "items": { "type": "string" },
                            "description": "ip:port addresses to dial" }
                    }
                }
            },
            "responses": {
                "Error": {
                    "description": "Error envelope",
                    "content": { "application/json": { "schema": {
                        "type": "object",
                        "properties": {
                            "response": { "nullable": true },
                            "error": { "type": "string" }
                        }
                    } } }
                }
            }
        }
    })
}
