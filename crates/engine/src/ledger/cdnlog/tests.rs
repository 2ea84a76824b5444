use super::*;
use proptest::prelude::*;
use std::io::Cursor;

const ID_A: &str = "0123456789abcdef0123456789abcdef01234567";
const ID_B: &str = "fedcba9876543210fedcba9876543210fedcba98";

fn id(s: &str) -> [u8; 20] {
    let mut out = [0u8; 20];
    hex::decode_to_slice(s, &mut out).unwrap();
    out
}

fn nginx(line: &str) -> Result<Option<LogEntry>, LineError> {
    parse_line(line, LogFormat::NginxCombined, &FieldMap::default())
}

#[test]
fn content_ids() {
    assert_eq!(
        content_id_of(&format!("/live/{ID_A}/seg/5.ts")),
        Some(id(ID_A))
    );
    assert_eq!(
        content_id_of(&format!("/{ID_A}/descriptor.peerlive")),
        Some(id(ID_A))
    );
    // The innermost one wins.
    assert_eq!(
        content_id_of(&format!("/{ID_A}/{ID_B}/live.m3u8")),
        Some(id(ID_B))
    );
    // The file name itself is not a content ID.
    assert_eq!(content_id_of(&format!("/live/{ID_A}")), None);
    // Upper case, wrong length or no hex: none.
    assert_eq!(
        content_id_of(&format!("/{}/x.ts", ID_A.to_uppercase())),
        None
    );
    assert_eq!(content_id_of(&format!("/{}/x.ts", &ID_A[..39])), None);
    assert_eq!(content_id_of(&format!("/{ID_A}0/x.ts")), None);
    assert_eq!(content_id_of("/favicon.ico"), None);
    assert_eq!(content_id_of(""), None);
}

#[test]
fn nginx_ok_line() {
    let l = format!(
        r#"127.0.0.1 - - [07/Dec/2026:12:00:01 +0000] "GET /live/{ID_A}/seg/5.ts HTTP/1.1" 200 262144 "-" "peercdn/0.1.0""#
    );
    assert_eq!(
        nginx(&l).unwrap(),
        Some(LogEntry {
            host: None,
            path: format!("/live/{ID_A}/seg/5.ts"),
            status: 200,
            bytes: 262144,
        })
    );
}

#[test]
fn nginx_variants() {
    // Query string stripped, 206 partial content, HTTP/2.
    let l = format!(
        r#"2001:db8::1 - - [07/Dec/2026:12:00:02 +0000] "GET /vod/{ID_A}/movie.mp4?token=abc HTTP/2.0" 206 1048576 "https://example.org/watch" "Mozilla/5.0 (X11; Linux x86_64)""#
    );
    let e = nginx(&l).unwrap().unwrap();
    assert_eq!(
        (e.path.as_str(), e.status, e.bytes),
        (&*format!("/vod/{ID_A}/movie.mp4"), 206, 1048576)
    );

    // Escaped quotes (as nginx writes them) and a backslash in the UA.
    let l = format!(
        r#"10.0.0.7 - - [07/Dec/2026:12:00:03 +0000] "GET /{ID_A}/live.m3u8 HTTP/1.1" 200 512 "-" "evil \x22agent\x22 \x5C o/""#
    );
    assert_eq!(nginx(&l).unwrap().unwrap().bytes, 512);
    // Apache-style \" escapes are tolerated as well.
    let l = format!(
        r#"10.0.0.7 - - [07/Dec/2026:12:00:03 +0000] "GET /{ID_A}/live.m3u8 HTTP/1.1" 200 513 "-" "say \"hi\"""#
    );
    assert_eq!(nginx(&l).unwrap().unwrap().bytes, 513);

    // A user name with a space, extra trailing fields ($host, $request_time).
    let l = format!(
        r#"10.0.0.8 - jo ann [07/Dec/2026:12:00:04 +0000] "HEAD /{ID_A}/seg/1.hdr HTTP/1.1" 200 0 "-" "curl/8.5.0" "cdn.example.org" 0.001"#
    );
    assert_eq!(nginx(&l).unwrap().unwrap().status, 200);

    // Common Log Format (no referer / user agent).
    let l = format!(
        r#"10.0.0.9 - - [07/Dec/2026:12:00:05 +0000] "GET /{ID_A}/seg/2.ts HTTP/1.0" 200 77"#
    );
    assert_eq!(nginx(&l).unwrap().unwrap().bytes, 77);

    // Absolute-form request target.
    let l = format!(
        r#"10.0.0.9 - - [07/Dec/2026:12:00:05 +0000] "GET http://cdn.example.org/{ID_A}/seg/3.ts HTTP/1.1" 200 5 "-" "-""#
    );
    assert_eq!(
        nginx(&l).unwrap().unwrap().path,
        format!("/{ID_A}/seg/3.ts")
    );
}

#[test]
fn nginx_no_request_and_garbage_requests() {
    // What nginx writes when a client connects and sends nothing.
    let l = r#"192.0.2.1 - - [07/Dec/2026:12:00:06 +0000] "-" 400 0 "-" "-""#;
    assert_eq!(nginx(l).unwrap(), None);
    // A TLS handshake sent to a plain-HTTP port, escaped by nginx.
    let l = r#"192.0.2.1 - - [07/Dec/2026:12:00:07 +0000] "\x16\x03\x01\x00\xF7\x01\x00\x00\xF3\x03\x03" 400 157 "-" "-""#;
    assert_eq!(nginx(l).unwrap(), None);
    // ...but a 2xx for an unreadable request is flagged.
    let l = r#"192.0.2.1 - - [07/Dec/2026:12:00:07 +0000] "\x16\x03\x01" 200 157 "-" "-""#;
    assert!(matches!(
        nginx(l),
        Err(LineError::BadRequest { status: 200, .. })
    ));
}

#[test]
fn nginx_malformed_lines() {
    let cases = [
        r#"127.0.0.1 - - [07/Dec/2026:12:00:01 +0000] "GET / HTTP/1.1 200 5 "-" "x""#,
        r#"127.0.0.1 - - [07/Dec/2026:12:00:01 +0000] "GET / HTTP/1.1" abc 5 "-" "x""#,
        r#"127.0.0.1 - - [07/Dec/2026:12:00:01 +0000] "GET / HTTP/1.1" 200 -5 "-" "x""#,
        r#"127.0.0.1 - - [07/Dec/2026:12:00:01 +0000] "GET / HTTP/1.1" 200"#,
        r#"127.0.0.1 - - 07/Dec/2026:12:00:01 "GET / HTTP/1.1" 200 5 "-" "x""#,
        "just some text",
        "2026-12-07\t12:00:00\tLAX1\t5",
    ];
    for c in cases {
        assert!(nginx(c).is_err(), "{c}");
    }
    assert_eq!(nginx("   ").unwrap(), None);
    assert_eq!(
        nginx(&"x".repeat(MAX_LINE_LEN + 1)),
        Err(LineError::TooLong)
    );
}

#[test]
fn nginx_log_summary() {
    let log = format!(
        "127.0.0.1 - - [07/Dec/2026:12:00:01 +0000] \"GET /live/{ID_A}/seg/5.ts HTTP/1.1\" 200 262144 \"-\" \"peercdn/0.1.0\"\n\
         127.0.0.1 - - [07/Dec/2026:12:00:02 +0000] \"GET /live/{ID_A}/seg/6.ts HTTP/1.1\" 206 1000 \"-\" \"peercdn/0.1.0\"\r\n\
         127.0.0.1 - - [07/Dec/2026:12:00:03 +0000] \"GET /live/{ID_A}/seg/7.ts HTTP/1.1\" 404 153 \"-\" \"peercdn/0.1.0\"\n\
         127.0.0.1 - - [07/Dec/2026:12:00:04 +0000] \"GET /live/{ID_B}/live.m3u8 HTTP/1.1\" 200 300 \"-\" \"peercdn/0.1.0\"\n\
         \n\
         192.0.2.1 - - [07/Dec/2026:12:00:05 +0000] \"-\" 400 0 \"-\" \"-\"\n\
         127.0.0.1 - - [07/Dec/2026:12:00:06 +0000] \"GET /index.html HTTP/1.1\" 200 42 \"-\" \"curl/8\"\n\
         garbage line\n\
         127.0.0.1 - - [07/Dec/2026:12:00:07 +0000] \"GET /live/{ID_A}/seg/8.ts HTTP/1.1\" 304 0 \"-\" \"peercdn/0.1.0\"\n\
         127.0.0.1 - - [07/Dec/2026:12:00:08 +0000] \"GET /live/{ID_A}/seg/9.ts HTTP/1.1\" 200 10"
    );
    let s = read_log(Cursor::new(log)).unwrap();
    assert_eq!(s.format, LogFormat::NginxCombined);
    assert_eq!(s.lines, 10);
    assert_eq!(s.bad_lines, 1);
    assert_eq!(s.first_bad.as_ref().map(|b| b.0), Some(8));
    let a = &s.per_content[&id(ID_A)];
    assert_eq!((a.bytes, a.requests), (262144 + 1000 + 10, 3));
    assert!(a.hosts.is_empty());
    let b = &s.per_content[&id(ID_B)];
    assert_eq!((b.bytes, b.requests), (300, 1));
    assert_eq!(s.per_content.len(), 2);
    assert_eq!((s.other_bytes, s.other_requests), (42, 1));
    assert_eq!(s.uncounted_status, 2); // the 404 and the 304
}

/// Lines written by a real nginx 1.22.1 (`access_log … combined`) for: a
/// full GET, a ranged GET with a query and a user agent containing `"`
/// and `\`, a 404, raw TLS-ish bytes with a quote, and a 404 for a path
/// containing a quote.
#[test]
fn real_nginx_output() {
    let log = concat!(
        r#"127.0.0.1 - - [07/Dec/2026:12:22:45 +0000] "GET /live/0123456789abcdef0123456789abcdef01234567/seg/5.ts HTTP/1.1" 200 262144 "-" "peercdn/0.1.0""#,
        "\n",
        r#"127.0.0.1 - - [07/Dec/2026:12:22:45 +0000] "GET /live/0123456789abcdef0123456789abcdef01234567/seg/5.ts?x=1 HTTP/1.1" 206 1000 "-" "say \x22hi\x22 \x5C ok""#,
        "\n",
        r#"127.0.0.1 - - [07/Dec/2026:12:22:45 +0000] "GET /nope/0123456789abcdef0123456789abcdef01234567/x.ts HTTP/1.1" 404 153 "-" "curl/7.88.1""#,
        "\n",
        r#"127.0.0.1 - - [07/Dec/2026:12:22:45 +0000] "\x16\x03\x01\x00\x22weird" 400 157 "-" "-""#,
        "\n",
        r#"127.0.0.1 - - [07/Dec/2026:12:22:45 +0000] "GET /a\x22b/0123456789abcdef0123456789abcdef01234567/seg/5.ts HTTP/1.1" 404 153 "-" "-""#,
        "\n",
    );
    let s = read_log(Cursor::new(log)).unwrap();
    assert_eq!(s.format, LogFormat::NginxCombined);
    assert_eq!((s.lines, s.bad_lines), (5, 0), "{:?}", s.first_bad);
    let a = &s.per_content[&id(ID_A)];
    assert_eq!((a.bytes, a.requests), (263_144, 2));
    assert_eq!(s.uncounted_status, 2);
    assert_eq!(s.per_content.len(), 1);
}

/// The header AWS documents for standard (legacy) logs, all 33 fields.
const CF_FIELDS: &str = "#Fields: date time x-edge-location sc-bytes c-ip cs-method cs(Host) cs-uri-stem sc-status cs(Referer) cs(User-Agent) cs-uri-query cs(Cookie) x-edge-result-type x-edge-request-id x-host-header cs-protocol cs-bytes time-taken x-forwarded-for ssl-protocol ssl-cipher x-edge-response-result-type cs-protocol-version fle-status fle-encrypted-fields c-port time-to-first-byte x-edge-detailed-result-type sc-content-type sc-content-len sc-range-start sc-range-end";

fn cf_line(
    bytes: &str,
    cs_host: &str,
    stem: &str,
    status: &str,
    query: &str,
    host_header: &str,
) -> String {
    [
        "2026-12-07",
        "12:00:01",
        "LAX50-C1",
        bytes,
        "192.0.2.100",
        "GET",
        cs_host,
        stem,
        status,
        "-",
        "peercdn/0.1.0",
        query,
        "-",
        "Hit",
        "SOX4xwn4XV6Q4rgb7XiVGOHms_BGlTAC4KyHmureZmBNrjGdRLiNIQ==",
        host_header,
        "https",
        "160",
        "0.001",
        "-",
        "TLSv1.3",
        "TLS_AES_128_GCM_SHA256",
        "Hit",
        "HTTP/2.0",
        "-",
        "-",
        "11040",
        "0.001",
        "Hit",
        "video/mp2t",
        "262144",
        "-",
        "-",
    ]
    .join("\t")
}

#[test]
fn cloudfront_log_with_header_and_two_hosts() {
    let d = "d111111abcdef8.cloudfront.net";
    let lines = [
        "#Version: 1.0".to_owned(),
        CF_FIELDS.to_owned(),
        cf_line(
            "262500",
            d,
            &format!("/live/{ID_A}/seg/5.ts"),
            "200",
            "-",
            "cdn.example.org",
        ),
        cf_line(
            "1300",
            d,
            &format!("/live/{ID_A}/seg/6.ts"),
            "206",
            "x=1",
            "cdn2.example.net",
        ),
        cf_line(
            "400",
            d,
            &format!("/live/{ID_A}/live.m3u8"),
            "200",
            "-",
            "cdn.example.org",
        ),
        // No x-host-header: falls back to cs(Host).
        cf_line(
            "700",
            d,
            &format!("/live/{ID_B}/live.m3u8"),
            "200",
            "-",
            "-",
        ),
        cf_line(
            "900",
            d,
            &format!("/live/{ID_A}/seg/7.ts"),
            "403",
            "-",
            "cdn.example.org",
        ),
        cf_line("5", d, "/robots.txt", "200", "-", "cdn.example.org"),
        // Viewer went away before a response.
        cf_line(
            "0",
            d,
            &format!("/live/{ID_A}/seg/8.ts"),
            "000",
            "-",
            "cdn.example.org",
        ),
        "2026-12-07\t12:00:09\tLAX50-C1\tnot-a-number".to_owned(),
    ];
    let s = read_log(Cursor::new(lines.join("\n") + "\n")).unwrap();
    assert_eq!(s.format, LogFormat::CloudFront);
    assert_eq!(s.lines, 10);
    assert_eq!(s.bad_lines, 1);
    assert_eq!(s.first_bad.as_ref().map(|b| b.0), Some(10));
    let a = &s.per_content[&id(ID_A)];
    assert_eq!((a.bytes, a.requests), (262500 + 1300 + 400, 3));
    assert_eq!(a.hosts.len(), 2);
    assert_eq!(a.hosts["cdn.example.org"], 262900);
    assert_eq!(a.hosts["cdn2.example.net"], 1300);
    let b = &s.per_content[&id(ID_B)];
    assert_eq!(b.hosts[d], 700);
    assert_eq!((s.other_bytes, s.other_requests), (5, 1));
    assert_eq!(s.uncounted_status, 2);
}

#[test]
fn cloudfront_header_order_is_honoured() {
    // A custom (v2-style) field selection in a different order.
    let log = format!(
        "#Version: 1.0\n#Fields: cs-uri-stem sc-status date sc-bytes cs(Host)\n\
         /{ID_A}/seg/1.ts\t200\t2026-12-07\t1234\td1.cloudfront.net\n"
    );
    let s = read_log(Cursor::new(log)).unwrap();
    let a = &s.per_content[&id(ID_A)];
    assert_eq!(a.bytes, 1234);
    assert_eq!(a.hosts["d1.cloudfront.net"], 1234);
    assert_eq!(s.bad_lines, 0);

    // Without a #Fields line the documented default order is used, and
    // old 12-column lines fall back to cs(Host).
    let old = format!(
        "2012-05-24\t11:35:53\tDFW3\t3343\t99.116.172.58\tGET\td3gs014xn8p70.cloudfront.net\t/{ID_A}/x.ts\t200\t-\tMozilla/5.0\t-\n"
    );
    let s = read_log(Cursor::new(old)).unwrap();
    assert_eq!(s.format, LogFormat::CloudFront);
    assert_eq!(
        s.per_content[&id(ID_A)].hosts["d3gs014xn8p70.cloudfront.net"],
        3343
    );

    // A header without sc-bytes stops the read.
    let bad = "#Version: 1.0\n#Fields: date time cs-uri-stem sc-status\n";
    assert!(matches!(
        read_log(Cursor::new(bad)),
        Err(CdnLogError::MissingField {
            line: 2,
            field: "sc-bytes"
        })
    ));
}

#[test]
fn format_detection() {
    assert_eq!(detect_format("#Version: 1.0"), LogFormat::CloudFront);
    assert_eq!(detect_format(CF_FIELDS), LogFormat::CloudFront);
    assert_eq!(
        detect_format("2019-12-04\t21:02:31\tLAX1\t392"),
        LogFormat::CloudFront
    );
    assert_eq!(
        detect_format(
            r#"127.0.0.1 - - [07/Dec/2026:12:00:01 +0000] "GET / HTTP/1.1" 200 1 "-" "-""#
        ),
        LogFormat::NginxCombined
    );
    // Forcing the format is possible.
    let s = read_log_as(
        Cursor::new("2019-12-04\t21:02:31\n"),
        LogFormat::NginxCombined,
    )
    .unwrap();
    assert_eq!((s.format, s.bad_lines), (LogFormat::NginxCombined, 1));
}

#[test]
fn long_lines_saturation_and_gzip() {
    // An over-long line is a counted bad line; the next line still parses.
    let ok = format!(
        r#"1.2.3.4 - - [07/Dec/2026:12:00:01 +0000] "GET /{ID_A}/a.ts HTTP/1.1" 200 7 "-" "-""#
    );
    let log = format!("{}\n{ok}\n", "y".repeat(MAX_LINE_LEN * 3));
    let s = read_log(Cursor::new(log)).unwrap();
    assert_eq!((s.lines, s.bad_lines), (2, 1));
    assert_eq!(s.first_bad, Some((1, LineError::TooLong.to_string())));
    assert_eq!(s.per_content[&id(ID_A)].bytes, 7);
    // Exactly at the cap is fine (and a trailing \r does not count).
    let pad = MAX_LINE_LEN - ok.len();
    let at_cap = format!("{ok}{}\r\n", " ".repeat(pad));
    let s = read_log(Cursor::new(at_cap)).unwrap();
    assert_eq!(s.bad_lines, 0);

    // Byte counts saturate instead of overflowing.
    let big = format!(
        "1.2.3.4 - - [07/Dec/2026:12:00:01 +0000] \"GET /{ID_A}/a.ts HTTP/1.1\" 200 18446744073709551615 \"-\" \"-\"\n\
         1.2.3.4 - - [07/Dec/2026:12:00:01 +0000] \"GET /{ID_A}/a.ts HTTP/1.1\" 200 99999999999999999999999 \"-\" \"-\"\n"
    );
    let s = read_log(Cursor::new(big)).unwrap();
    assert_eq!(s.per_content[&id(ID_A)].bytes, u64::MAX);
    assert_eq!(s.per_content[&id(ID_A)].requests, 2);

    assert!(matches!(
        read_log(Cursor::new(vec![0x1f, 0x8b, 8, 0, 0, 0])),
        Err(CdnLogError::Compressed)
    ));
    let s = read_log(Cursor::new("")).unwrap();
    assert_eq!((s.lines, s.bad_lines), (0, 0));
    // Invalid UTF-8 in the user agent does not lose the line.
    let mut bytes = format!(
        r#"1.2.3.4 - - [07/Dec/2026:12:00:01 +0000] "GET /{ID_B}/a.ts HTTP/1.1" 200 3 "-" ""#
    )
    .into_bytes();
    bytes.extend_from_slice(b"\xff\xfe\"\n");
    let s = read_log(Cursor::new(bytes)).unwrap();
    assert_eq!(s.per_content[&id(ID_B)].bytes, 3);
}

#[test]
fn host_count_is_capped() {
    let mut log = String::from("#Version: 1.0\n");
    log.push_str(CF_FIELDS);
    log.push('\n');
    for i in 0..MAX_HOSTS_PER_CONTENT + 10 {
        log.push_str(&cf_line(
            "1",
            "d.cloudfront.net",
            &format!("/{ID_A}/a.ts"),
            "200",
            "-",
            &format!("h{i}.example"),
        ));
        log.push('\n');
    }
    let s = read_log(Cursor::new(log)).unwrap();
    let a = &s.per_content[&id(ID_A)];
    assert_eq!(a.hosts.len(), MAX_HOSTS_PER_CONTENT + 1);
    assert_eq!(a.hosts[OTHER_HOSTS], 10);
    assert_eq!(a.bytes, (MAX_HOSTS_PER_CONTENT + 10) as u64);
}

/// A reader that fails after its data, to check I/O errors carry the line.
struct FailAfter(Cursor<Vec<u8>>);
impl io::Read for FailAfter {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self.0.read(buf)? {
            0 => Err(io::Error::other("disk on fire")),
            n => Ok(n),
        }
    }
}

#[test]
fn io_error_names_line() {
    let r = io::BufReader::new(FailAfter(Cursor::new(b"a\nb\n".to_vec())));
    match read_log(r) {
        Err(CdnLogError::Io { line, .. }) => assert_eq!(line, 3),
        other => panic!("expected an I/O error, got {other:?}"),
    }
}

proptest! {
    #[test]
    fn parse_line_never_panics(s in ".{0,300}") {
        let _ = parse_line(&s, LogFormat::NginxCombined, &FieldMap::default());
        let _ = parse_line(&s, LogFormat::CloudFront, &FieldMap::default());
        let fm = FieldMap { bytes: 0, uri_stem: 1, status: 2, host_header: Some(40), cs_host: None };
        let _ = parse_line(&s, LogFormat::CloudFront, &fm);
        let _ = content_id_of(&s);
        let _ = detect_format(&s);
    }

    #[test]
    fn parse_line_never_panics_on_log_like_text(
        parts in proptest::collection::vec(
            prop_oneof![
                Just("\"".to_owned()), Just("\\".to_owned()), Just(" ".to_owned()),
                Just("\t".to_owned()), Just("[".to_owned()), Just("]".to_owned()),
                Just("200".to_owned()), Just("-".to_owned()), Just(format!("/{ID_A}/")),
                Just("GET".to_owned()), Just("://".to_owned()), "[a-z0-9?/]{0,5}",
            ],
            0..40,
        )
    ) {
        let s = parts.concat();
        let _ = parse_line(&s, LogFormat::NginxCombined, &FieldMap::default());
        let _ = parse_line(&s, LogFormat::CloudFront, &FieldMap::default());
    }

    #[test]
    fn read_log_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..2000)) {
        if let Ok(s) = read_log(Cursor::new(&bytes)) {
            prop_assert!(s.bad_lines <= s.lines);
            prop_assert_eq!(s.first_bad.is_some(), s.bad_lines > 0);
            for c in s.per_content.values() {
                prop_assert!(c.requests >= 1);
                let per_host = c.hosts.values().fold(0u64, |a, b| a.saturating_add(*b));
                prop_assert!(per_host <= c.bytes);
            }
        }
    }

    #[test]
    fn nginx_round_trip(
        status in 100u16..600,
        bytes in any::<u64>(),
        idx in 0u32..100_000,
        ua in "[ -~]{0,60}",
    ) {
        // Escape the UA the way nginx does.
        let ua: String = ua.chars().map(|c| match c {
            '"' => "\\x22".to_owned(),
            '\\' => "\\x5C".to_owned(),
            c => c.to_string(),
        }).collect();
        let l = format!(r#"1.2.3.4 - - [07/Dec/2026:12:00:01 +0000] "GET /x/{ID_A}/seg/{idx}.ts HTTP/1.1" {status} {bytes} "-" "{ua}""#);
        let e = nginx(&l).unwrap().unwrap();
        prop_assert_eq!(e.status, status);
        prop_assert_eq!(e.bytes, bytes);
        prop_assert_eq!(e.path, format!("/x/{ID_A}/seg/{idx}.ts"));
    }
}
