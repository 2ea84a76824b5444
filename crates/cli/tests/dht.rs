//! No signalling server: a viewer that knows only the content ID finds the publisher through a
//! private mainline DHT on 127.0.0.1 (one peercdn engine serves as the bootstrap node), fetches
//! the metadata from it and downloads.

mod common;

use std::time::Duration;

use common::*;

#[test]
fn id_only_download_through_a_private_dht() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // The bootstrap node: an engine whose DHT knows only itself.
    let (_boot_node, boot) = dht_boot_node(d);

    let publisher = peercdn_publisher(d, "content", 81, &["--dht-bootstrap", &boot]);
    let log = publisher.proc.log_text();
    let id = log
        .lines()
        .find_map(|l| l.strip_prefix("id: "))
        .expect("publish prints the id")
        .to_string();

    // The viewer has the ID and the bootstrap node, nothing else (no --peer, no tracker).
    let out = d.join("out");
    let mut get = peercdn_get(d, "viewer", &id, &out, &[], &["--dht-bootstrap", &boot]);
    let st = get.wait(Duration::from_secs(120));
    assert!(
        st.success(),
        "get by ID through the DHT failed ({st}):\n{}\npublisher:\n{}",
        get.log_text(),
        publisher.proc.log_text()
    );
    assert_same_tree(&publisher.src, &out.join("content"));
}
