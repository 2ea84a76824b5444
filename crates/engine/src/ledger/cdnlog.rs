//! CDN access logs, summarised per content ID for reconciliation.
//!
//! A broadcaster pays for CDN egress and also collects viewer-signed receipts
//! for the bytes viewers fetched from the CDN. This module owns the other side
//! of that comparison: reading the CDN operator's access log and adding up,
//! per content ID, the bytes the CDN says it served. It does not decide what a
//! mismatch means; it only produces a [`LogSummary`].
//!
//! The CDN serves a directory laid out as
//! `/<prefix…>/<content id: 40 lower-case hex>/<file>`, so the content ID of a
//! request is the innermost 40-hex path segment before the file name (see
//! [`content_id_of`]). Requests whose path has none are totalled separately
//! ([`LogSummary::other_bytes`]).
//!
//! Two log formats are understood:
//! - nginx `combined` (`$remote_addr - $remote_user [$time_local] "$request"
//!   $status $body_bytes_sent "$http_referer" "$http_user_agent"`), plus the
//!   shorter Common Log Format and extra trailing fields. nginx escapes `"`,
//!   `\` and non-printable bytes inside variables as `\xHH`, so the only raw
//!   quotes on a line are the format's own; Apache-style `\"` is tolerated
//!   too. The byte count is `$body_bytes_sent` (body only, no headers).
//! - CloudFront standard (legacy) access logs: tab-separated, with
//!   `#Version:` / `#Fields:` header lines naming the columns. Without a
//!   `#Fields:` line the documented default column order is assumed. The byte
//!   count is `sc-bytes`, which per AWS includes response headers, so it runs
//!   slightly higher than a body-only count for the same requests.
//!
//! Only successful responses (status 200–299, which includes `206 Partial
//! Content`) are counted. Logs are untrusted input: lines longer than
//! [`MAX_LINE_LEN`] are refused (and counted) without being buffered, every
//! counter saturates instead of overflowing, a content ID keeps at most
//! [`MAX_HOSTS_PER_CONTENT`] distinct hosts, and no input makes the reader
//! panic. A malformed line is counted in [`LogSummary::bad_lines`] (the first
//! one is kept with its line number); only I/O errors, a gzip-compressed
//! stream, or a CloudFront `#Fields:` header lacking a needed column stop the
//! read.

use std::collections::BTreeMap;
use std::io::{self, BufRead};

/// Longest log line accepted, in bytes (without the line ending). Longer
/// lines are skipped as bad lines, and never held in memory whole.
pub const MAX_LINE_LEN: usize = 16 * 1024;

/// Most distinct hosts recorded for one content ID; bytes from further hosts
/// are recorded under [`OTHER_HOSTS`].
pub const MAX_HOSTS_PER_CONTENT: usize = 256;

/// Host key collecting bytes for hosts beyond [`MAX_HOSTS_PER_CONTENT`].
pub const OTHER_HOSTS: &str = "(other hosts)";

/// A failure that stops reading a log altogether.
#[derive(Debug, thiserror::Error)]
pub enum CdnLogError {
    /// Reading from the underlying reader failed.
    #[error("reading the log failed at line {line}: {source}")]
    Io {
        /// The line being read (1-based).
        line: u64,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// The stream starts with the gzip magic bytes (CloudFront delivers its
    /// logs as `.gz` files).
    #[error("the log is gzip-compressed; decompress it first (e.g. with zcat)")]
    Compressed,
    /// A CloudFront `#Fields:` header lacks a column this reader needs.
    #[error(
        "line {line}: the #Fields header has no {field} column, which is needed to count bytes"
    )]
    MissingField {
        /// The header's line number (1-based).
        line: u64,
        /// The missing column's name.
        field: &'static str,
    },
}

/// Why one log line could not be parsed. Lines with such errors are counted
/// in [`LogSummary::bad_lines`], not fatal.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LineError {
    /// The line exceeds [`MAX_LINE_LEN`].
    #[error("line is longer than {MAX_LINE_LEN} bytes")]
    TooLong,
    /// A quoted field is not closed.
    #[error("unterminated quoted field")]
    UnterminatedQuote,
    /// The line does not have the shape of the log format.
    #[error("not a {format} log line: {why}")]
    Malformed {
        /// The expected format's name.
        format: &'static str,
        /// What was missing or wrong.
        why: &'static str,
    },
    /// A CloudFront line has fewer columns than the header promises.
    #[error("has {have} tab-separated fields, expected at least {need}")]
    TooFewFields {
        /// Columns found.
        have: usize,
        /// Columns needed to reach every used field.
        need: usize,
    },
    /// The status field is not an HTTP status code.
    #[error("status {0:?} is not a 3-digit HTTP status")]
    BadStatus(String),
    /// The byte-count field is not a number.
    #[error("byte count {0:?} is not a non-negative integer")]
    BadBytes(String),
    /// A successful response whose request line cannot be read, so its bytes
    /// cannot be attributed.
    #[error("status {status} response to an unreadable request line {request:?}")]
    BadRequest {
        /// The response status.
        status: u16,
        /// The start of the request line.
        request: String,
    },
}

/// One request from an access log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEntry {
    /// The host the request was for, if the format records it (CloudFront
    /// does; nginx `combined` does not).
    pub host: Option<String>,
    /// The request path, without query string.
    pub path: String,
    /// The response status (0 if CloudFront logged `000`, i.e. the viewer
    /// went away before a response).
    pub status: u16,
    /// Bytes sent to the viewer (see the module doc for what each format
    /// includes).
    pub bytes: u64,
}

/// Which access-log format a log is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LogFormat {
    /// nginx `combined` (or Common Log Format).
    NginxCombined,
    /// CloudFront standard (legacy) access log, tab-separated.
    CloudFront,
}

impl LogFormat {
    fn name(self) -> &'static str {
        match self {
            LogFormat::NginxCombined => "nginx combined",
            LogFormat::CloudFront => "CloudFront",
        }
    }
}

/// Guesses the format from the first non-blank line of a log: CloudFront if
/// it is a `#Version:`/`#Fields:` header or a tab-separated line starting with
/// a `YYYY-MM-DD` date, nginx `combined` otherwise.
pub fn detect_format(first_line: &str) -> LogFormat {
    let l = first_line.trim_start_matches('\u{feff}');
    if l.starts_with("#Version:") || l.starts_with("#Fields:") {
        return LogFormat::CloudFront;
    }
    if let Some((date, _)) = l.split_once('\t') {
        let b = date.as_bytes();
        let is_date = b.len() == 10
            && b[4] == b'-'
            && b[7] == b'-'
            && b.iter()
                .enumerate()
                .all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit());
        if is_date {
            return LogFormat::CloudFront;
        }
    }
    LogFormat::NginxCombined
}

/// Column positions (0-based) of the CloudFront fields this reader uses,
/// taken from a `#Fields:` header or the documented default order. Ignored
/// for nginx logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldMap {
    /// `sc-bytes`.
    pub bytes: usize,
    /// `cs-uri-stem`.
    pub uri_stem: usize,
    /// `sc-status`.
    pub status: usize,
    /// `x-host-header`: the host the viewer asked for (preferred).
    pub host_header: Option<usize>,
    /// `cs(Host)`: the CloudFront distribution's domain (used when
    /// `x-host-header` is absent or `-`).
    pub cs_host: Option<usize>,
}

impl Default for FieldMap {
    /// The documented default column order of CloudFront standard logs:
    /// `date time x-edge-location sc-bytes c-ip cs-method cs(Host)
    /// cs-uri-stem sc-status cs(Referer) cs(User-Agent) cs-uri-query
    /// cs(Cookie) x-edge-result-type x-edge-request-id x-host-header …`.
    fn default() -> Self {
        FieldMap {
            bytes: 3,
            uri_stem: 7,
            status: 8,
            host_header: Some(15),
            cs_host: Some(6),
        }
    }
}

impl FieldMap {
    /// Reads a CloudFront `#Fields:` header line. Errors name the first
    /// needed column that is missing (`sc-bytes`, `cs-uri-stem` or
    /// `sc-status`); the host columns are optional.
    pub fn from_fields_header(line: &str) -> Result<FieldMap, &'static str> {
        let names = line
            .trim_start_matches('\u{feff}')
            .strip_prefix("#Fields:")
            .unwrap_or(line);
        let pos = |want: &str| names.split_whitespace().position(|n| n == want);
        Ok(FieldMap {
            bytes: pos("sc-bytes").ok_or("sc-bytes")?,
            uri_stem: pos("cs-uri-stem").ok_or("cs-uri-stem")?,
            status: pos("sc-status").ok_or("sc-status")?,
            host_header: pos("x-host-header"),
            cs_host: pos("cs(Host)"),
        })
    }

    /// Fields a line needs to reach the byte, path and status columns.
    fn min_fields(&self) -> usize {
        self.bytes.max(self.uri_stem).max(self.status) + 1
    }
}

/// Bytes served for one content ID.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContentBytes {
    /// Total bytes of counted (2xx) responses, saturating.
    pub bytes: u64,
    /// Counted responses.
    pub requests: u64,
    /// Bytes per host (empty for formats without a host column).
    pub hosts: BTreeMap<String, u64>,
}

/// What [`read_log`] found in a log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogSummary {
    /// The format the log was read as (`NginxCombined` if the log had no
    /// non-blank line to detect it from).
    pub format: LogFormat,
    /// Lines read, including headers, blank and bad lines.
    pub lines: u64,
    /// Lines that could not be parsed.
    pub bad_lines: u64,
    /// The first bad line's number (1-based) and what was wrong with it.
    pub first_bad: Option<(u64, String)>,
    /// Counted bytes and requests per content ID.
    pub per_content: BTreeMap<[u8; 20], ContentBytes>,
    /// Bytes of counted (2xx) responses whose path has no content ID.
    pub other_bytes: u64,
    /// Counted (2xx) responses whose path has no content ID.
    pub other_requests: u64,
    /// Requests with a readable path not counted because their status was
    /// not 2xx.
    pub uncounted_status: u64,
}

impl LogSummary {
    fn new(format: LogFormat) -> Self {
        LogSummary {
            format,
            lines: 0,
            bad_lines: 0,
            first_bad: None,
            per_content: BTreeMap::new(),
            other_bytes: 0,
            other_requests: 0,
            uncounted_status: 0,
        }
    }

    fn bad(&mut self, line_no: u64, why: String) {
        self.bad_lines = self.bad_lines.saturating_add(1);
        if self.first_bad.is_none() {
            self.first_bad = Some((line_no, why));
        }
    }

    fn add(&mut self, e: LogEntry) {
        if !(200..=299).contains(&e.status) {
            self.uncounted_status = self.uncounted_status.saturating_add(1);
            return;
        }
        let Some(id) = content_id_of(&e.path) else {
            self.other_bytes = self.other_bytes.saturating_add(e.bytes);
            self.other_requests = self.other_requests.saturating_add(1);
            return;
        };
        let c = self.per_content.entry(id).or_default();
        c.bytes = c.bytes.saturating_add(e.bytes);
        c.requests = c.requests.saturating_add(1);
        if let Some(host) = e.host {
            let key = if c.hosts.len() < MAX_HOSTS_PER_CONTENT || c.hosts.contains_key(&host) {
                host
            } else {
                OTHER_HOSTS.to_owned()
            };
            let h = c.hosts.entry(key).or_default();
            *h = h.saturating_add(e.bytes);
        }
    }
}

/// The content ID of a request path: the innermost path segment before the
/// file name that is exactly 40 lower-case hex digits, decoded. `None` if
/// there is none (a bare `/<id>` has no file name, so no content ID).
pub fn content_id_of(path: &str) -> Option<[u8; 20]> {
    let path = path.split(['?', '#']).next().unwrap_or(path);
    let mut segments = path.rsplit('/');
    segments.next()?; // the file name
    segments.find_map(|s| {
        let lower_hex = s.len() == 40 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        if !lower_hex {
            return None;
        }
        let mut id = [0u8; 20];
        hex::decode_to_slice(s, &mut id).ok()?;
        Some(id)
    })
}

/// Parses one log line. `Ok(None)` means the line carries no request to count:
/// it is blank, a `#` header or comment in a CloudFront log, or its request
/// line (nginx) or `cs-uri-stem` (CloudFront) is `-` or unreadable and the
/// response was not a 2xx (an unreadable request answered with 2xx is an
/// error, since its bytes cannot be attributed).
///
/// `fields` is only used for CloudFront; header lines do not update it here
/// (see [`FieldMap::from_fields_header`], which [`read_log`] applies).
pub fn parse_line(
    line: &str,
    format: LogFormat,
    fields: &FieldMap,
) -> Result<Option<LogEntry>, LineError> {
    let line = line.trim_end_matches(['\r', '\n']);
    if line.len() > MAX_LINE_LEN {
        return Err(LineError::TooLong);
    }
    if line.trim().is_empty() {
        return Ok(None);
    }
    match format {
        LogFormat::NginxCombined => parse_nginx(line),
        LogFormat::CloudFront => parse_cloudfront(line, fields),
    }
}

fn malformed(format: LogFormat, why: &'static str) -> LineError {
    LineError::Malformed {
        format: format.name(),
        why,
    }
}

/// The first `max` characters of `s`, for error messages.
fn snippet(s: &str, max: usize) -> String {
    s.chars().take(max).collect()
}

fn parse_status(s: &str) -> Result<u16, LineError> {
    if s.len() == 3 && s.bytes().all(|b| b.is_ascii_digit()) {
        s.parse().map_err(|_| LineError::BadStatus(snippet(s, 16)))
    } else {
        Err(LineError::BadStatus(snippet(s, 16)))
    }
}

fn parse_bytes(s: &str) -> Result<u64, LineError> {
    if s == "-" {
        return Ok(0);
    }
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(LineError::BadBytes(snippet(s, 24)));
    }
    // All digits: the only failure left is overflow, which saturates.
    Ok(s.parse().unwrap_or(u64::MAX))
}

/// Splits a line at double quotes that are not backslash-escaped. Returns the
/// pieces between them; an even number of quotes gives an odd piece count.
fn split_quotes(line: &str) -> Result<Vec<&str>, LineError> {
    let mut parts = Vec::new();
    let mut start = 0;
    let mut escaped = false;
    for (i, b) in line.bytes().enumerate() {
        match b {
            _ if escaped => escaped = false,
            b'\\' => escaped = true,
            b'"' => {
                parts.push(&line[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&line[start..]);
    if parts.len() % 2 == 0 {
        return Err(LineError::UnterminatedQuote);
    }
    Ok(parts)
}

fn parse_nginx(line: &str) -> Result<Option<LogEntry>, LineError> {
    const F: LogFormat = LogFormat::NginxCombined;
    let parts = split_quotes(line)?;
    if parts.len() < 3 {
        return Err(malformed(F, "no quoted request line"));
    }
    let (prefix, request, after) = (parts[0], parts[1], parts[2]);
    let prefix = prefix.trim_end();
    if !prefix.ends_with(']') || !prefix.contains(" [") {
        return Err(malformed(F, "no [time] field before the request"));
    }
    if prefix.split_whitespace().count() < 4 {
        return Err(malformed(
            F,
            "expected address, '-', user and [time] before the request",
        ));
    }
    if !after.starts_with(' ') {
        return Err(malformed(F, "no space after the request line"));
    }
    let mut tail = after.split_whitespace();
    let status = parse_status(
        tail.next()
            .ok_or(malformed(F, "no status after the request"))?,
    )?;
    let bytes = parse_bytes(
        tail.next()
            .ok_or(malformed(F, "no byte count after the status"))?,
    )?;
    if tail.next().is_some() {
        return Err(malformed(F, "unquoted text after the byte count"));
    }

    if request == "-" {
        return Ok(None);
    }
    match request_path(request) {
        Some(path) => Ok(Some(LogEntry {
            host: None,
            path,
            status,
            bytes,
        })),
        None if (200..=299).contains(&status) => Err(LineError::BadRequest {
            status,
            request: snippet(request, 40),
        }),
        None => Ok(None),
    }
}

/// The path of an HTTP request line (`METHOD target [HTTP/x.y]`), without
/// query string. Absolute-form targets (`http://host/path`) give their path.
fn request_path(request: &str) -> Option<String> {
    let mut it = request.split(' ').filter(|s| !s.is_empty());
    let method = it.next()?;
    let target = it.next()?;
    let proto = it.next();
    if it.next().is_some()
        || !method
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        || proto.is_some_and(|p| !p.starts_with("HTTP/"))
    {
        return None;
    }
    let target = match target.find("://") {
        Some(i) if !target.starts_with('/') => {
            let rest = &target[i + 3..];
            rest.find('/').map_or("/", |j| &rest[j..])
        }
        _ => target,
    };
    if !target.starts_with('/') {
        return None;
    }
    Some(strip_query(target).to_owned())
}

fn strip_query(target: &str) -> &str {
    target.split('?').next().unwrap_or(target)
}

fn parse_cloudfront(line: &str, fields: &FieldMap) -> Result<Option<LogEntry>, LineError> {
    const F: LogFormat = LogFormat::CloudFront;
    if line.starts_with('#') {
        return Ok(None);
    }
    let cols: Vec<&str> = line.split('\t').collect();
    let need = fields.min_fields();
    if cols.len() < need {
        return Err(LineError::TooFewFields {
            have: cols.len(),
            need,
        });
    }
    let status = parse_status(cols[fields.status])?;
    let bytes = parse_bytes(cols[fields.bytes])?;
    let stem = cols[fields.uri_stem];
    if !stem.starts_with('/') {
        // Mirror the nginx rule: an unreadable path only matters if its
        // bytes would have been counted.
        if (200..=299).contains(&status) {
            return Err(malformed(
                F,
                "cs-uri-stem of a 2xx response does not start with '/'",
            ));
        }
        return Ok(None);
    }
    let field = |i: Option<usize>| {
        i.and_then(|i| cols.get(i))
            .copied()
            .filter(|v| !v.is_empty() && *v != "-")
    };
    let host = field(fields.host_header)
        .or_else(|| field(fields.cs_host))
        .map(str::to_owned);
    Ok(Some(LogEntry {
        host,
        path: strip_query(stem).to_owned(),
        status,
        bytes,
    }))
}

/// Outcome of reading one line with [`read_capped_line`].
enum Line {
    /// End of input.
    Eof,
    /// A line within the cap (line ending removed).
    Ok,
    /// A line over the cap; its bytes were skipped, not stored.
    TooLong,
}

/// Reads one `\n`-terminated line into `buf` (cleared first), keeping at
/// most [`MAX_LINE_LEN`] bytes; longer lines are consumed and dropped.
fn read_capped_line<R: BufRead>(r: &mut R, buf: &mut Vec<u8>) -> io::Result<Line> {
    buf.clear();
    let mut too_long = false;
    let mut any = false;
    loop {
        let available = match r.fill_buf() {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if available.is_empty() {
            break;
        }
        any = true;
        let (chunk, done) = match available.iter().position(|&b| b == b'\n') {
            Some(i) => (&available[..i], Some(i + 1)),
            None => (available, None),
        };
        if !too_long {
            if buf.len() + chunk.len() > MAX_LINE_LEN + 1 {
                // +1 leaves room for a '\r' before the '\n'.
                too_long = true;
                buf.clear();
            } else {
                buf.extend_from_slice(chunk);
            }
        }
        let used = done.unwrap_or(available.len());
        r.consume(used);
        if done.is_some() {
            break;
        }
    }
    if !any {
        return Ok(Line::Eof);
    }
    if buf.last() == Some(&b'\r') {
        buf.pop();
    }
    if too_long || buf.len() > MAX_LINE_LEN {
        buf.clear();
        return Ok(Line::TooLong);
    }
    Ok(Line::Ok)
}

/// Reads a whole access log, detecting its format from the first non-blank
/// line (see [`detect_format`]), and sums the bytes of 2xx responses per
/// content ID. Bad lines are counted, not fatal; see [`CdnLogError`] for
/// what is.
pub fn read_log<R: BufRead>(r: R) -> Result<LogSummary, CdnLogError> {
    read_log_inner(r, None)
}

/// Like [`read_log`], but reads the log as `format` instead of detecting it.
pub fn read_log_as<R: BufRead>(r: R, format: LogFormat) -> Result<LogSummary, CdnLogError> {
    read_log_inner(r, Some(format))
}

fn read_log_inner<R: BufRead>(
    mut r: R,
    forced: Option<LogFormat>,
) -> Result<LogSummary, CdnLogError> {
    let io_err = |line: u64| move |source| CdnLogError::Io { line, source };
    let head = loop {
        match r.fill_buf() {
            Ok(b) => break b,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(io_err(1)(e)),
        }
    };
    if head.starts_with(&[0x1f, 0x8b]) {
        return Err(CdnLogError::Compressed);
    }

    let mut summary = LogSummary::new(forced.unwrap_or(LogFormat::NginxCombined));
    let mut format = forced;
    let mut fields = FieldMap::default();
    let mut buf = Vec::new();
    loop {
        let line_no = summary.lines.saturating_add(1);
        let kind = read_capped_line(&mut r, &mut buf).map_err(io_err(line_no))?;
        if matches!(kind, Line::Eof) {
            break;
        }
        summary.lines = line_no;
        if matches!(kind, Line::TooLong) {
            summary.bad(line_no, LineError::TooLong.to_string());
            continue;
        }
        let text = String::from_utf8_lossy(&buf);
        let mut line: &str = &text;
        if line_no == 1 {
            line = line.trim_start_matches('\u{feff}');
        }
        if line.trim().is_empty() {
            continue;
        }
        let fmt = *format.get_or_insert_with(|| detect_format(line));
        summary.format = fmt;
        if fmt == LogFormat::CloudFront && line.starts_with("#Fields:") {
            fields =
                FieldMap::from_fields_header(line).map_err(|field| CdnLogError::MissingField {
                    line: line_no,
                    field,
                })?;
            continue;
        }
        match parse_line(line, fmt, &fields) {
            Ok(Some(entry)) => summary.add(entry),
            Ok(None) => {}
            Err(e) => summary.bad(line_no, e.to_string()),
        }
    }
    Ok(summary)
}

#[cfg(test)]
mod tests;
