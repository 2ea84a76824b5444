//! Fuzz target: the Ace TCP API's line parser must never panic, and what it accepts as a
//! `START` or `LOADASYNC` names its content with a non-empty word.
#![no_main]

use libfuzzer_sys::fuzz_target;
use peercdn_http::tcp_api::{parse_command, Command, Source};

fuzz_target!(|data: &[u8]| {
    let line = String::from_utf8_lossy(data);
    let source = match parse_command(&line) {
        Ok(Command::Start { source, .. }) | Ok(Command::LoadAsync { source, .. }) => source,
        _ => return,
    };
    let (Source::Url(w) | Source::Infohash(w) | Source::Pid(w) | Source::Raw(w)) = source;
    assert!(!w.is_empty() && !w.contains(char::is_whitespace));
});
