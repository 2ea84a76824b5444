//! Fuzz target: reading a CDN access log (bytes from the CDN operator) must never panic, and what
//! it reports is self-consistent: bad lines are a subset of lines, every content ID counted has a
//! request, and its per-host bytes never add up to more than its total.
#![no_main]

use std::io::Cursor;

use libfuzzer_sys::fuzz_target;
use peercdn_engine::ledger::cdnlog::{
    parse_line, read_log, FieldMap, LogFormat, MAX_HOSTS_PER_CONTENT,
};

fuzz_target!(|data: &[u8]| {
    // The line parser on its own, in both formats.
    let text = String::from_utf8_lossy(data);
    for line in text.lines().take(64) {
        let _ = parse_line(line, LogFormat::NginxCombined, &FieldMap::default());
        let _ = parse_line(line, LogFormat::CloudFront, &FieldMap::default());
    }

    let Ok(summary) = read_log(Cursor::new(data)) else {
        return;
    };
    assert!(summary.bad_lines <= summary.lines);
    assert_eq!(summary.first_bad.is_some(), summary.bad_lines > 0);
    if let Some((line, _)) = &summary.first_bad {
        assert!(*line >= 1 && *line <= summary.lines);
    }
    for content in summary.per_content.values() {
        assert!(content.requests >= 1);
        assert!(content.hosts.len() <= MAX_HOSTS_PER_CONTENT + 1);
        let per_host = content
            .hosts
            .values()
            .fold(0u64, |acc, b| acc.saturating_add(*b));
        assert!(per_host <= content.bytes);
    }
});
