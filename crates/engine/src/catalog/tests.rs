//! Unit tests of the catalogue: admission, ranking, the file across restarts.

use super::*;
use ed25519_dalek::SigningKey;
use peercdn_core::catalog::Description;

const NOW: u64 = 1_765_000_000;

fn rec(publisher: u8, id: u8, title: &str, tags: &[&str], seq: u64) -> Record {
    let d = Description {
        title: title.into(),
        tags: tags.iter().map(|t| t.to_string()).collect(),
        category: "movies".into(),
        lang: "en".into(),
        ..Description::default()
    };
    Record::sign(
        &SigningKey::from_bytes(&[publisher; 32]),
        InfoHash([id; 20]),
        Kind::Vod,
        d,
        NOW - 100,
        seq,
    )
    .unwrap()
}

fn titles(r: &Results) -> Vec<String> {
    r.hits
        .iter()
        .map(|h| h.entry.record.desc.title.clone())
        .collect()
}

fn query(text: &str) -> SearchQuery {
    SearchQuery {
        text: text.into(),
        limit: 10,
        ..SearchQuery::default()
    }
}

#[test]
fn finds_by_title_words_and_tags_and_filters() {
    let c = Catalog::open(None, NOW).unwrap();
    c.insert(
        rec(1, 1, "Big Buck Bunny", &["animation"], 1),
        Origin::Own,
        NOW,
    )
    .unwrap();
    c.insert(
        rec(1, 2, "Sintel", &["animation", "dragon"], 1),
        Origin::Peer,
        NOW,
    )
    .unwrap();
    c.insert(
        rec(2, 3, "Tears of Steel", &["scifi"], 1),
        Origin::Peer,
        NOW,
    )
    .unwrap();
    assert_eq!(titles(&c.search(&query("bunny"), NOW)), ["Big Buck Bunny"]);
    assert_eq!(
        titles(&c.search(&query("BUCK bunny"), NOW)),
        ["Big Buck Bunny"]
    );
    assert_eq!(titles(&c.search(&query("dragon"), NOW)), ["Sintel"]);
    let all = c.search(&query(""), NOW);
    assert_eq!(all.total, 3);
    let mut q = query("animation");
    q.kind = Some(Kind::Live);
    assert_eq!(c.search(&q, NOW).total, 0);
    q.kind = Some(Kind::Vod);
    q.category = Some("Movies".into());
    assert_eq!(c.search(&q, NOW).total, 2);
    // Stray query syntax is words, not an error.
    assert_eq!(c.search(&query("bunny\" AND:("), NOW).total, 1);
}

/// Per publisher and content only the highest `seq` stands: a replay of the old version
/// after an update is refused, and the index forgets the old words.
#[test]
fn a_newer_version_replaces_and_a_replay_is_refused() {
    let c = Catalog::open(None, NOW).unwrap();
    let old = rec(1, 1, "Old title", &[], 1);
    c.insert(old.clone(), Origin::Peer, NOW).unwrap();
    assert_eq!(
        c.insert(old.clone(), Origin::Peer, NOW).unwrap(),
        Inserted::Duplicate
    );
    let new = rec(1, 1, "New title", &[], 2);
    assert_eq!(
        c.insert(new, Origin::Peer, NOW).unwrap(),
        Inserted::Replaced
    );
    assert!(matches!(
        c.insert(old, Origin::Peer, NOW),
        Err(Refused::Stale { got: 1, held: 2 })
    ));
    assert_eq!(c.search(&query("old"), NOW).total, 0);
    assert_eq!(titles(&c.search(&query("title"), NOW)), ["New title"]);
    assert_eq!(c.len(), 1);
}

#[test]
fn forged_future_and_denied_records_are_refused() {
    let c = Catalog::open(None, NOW).unwrap();
    let mut forged = rec(1, 1, "Forged", &[], 1);
    forged.desc.title = "Changed".into();
    assert!(matches!(
        c.insert(forged, Origin::Peer, NOW),
        Err(Refused::Invalid(RecordError::BadSignature))
    ));
    let future = Record::sign(
        &SigningKey::from_bytes(&[1; 32]),
        InfoHash([1; 20]),
        Kind::Vod,
        Description {
            title: "Future".into(),
            ..Description::default()
        },
        NOW + 3600,
        1,
    )
    .unwrap();
    assert!(matches!(
        c.insert(future, Origin::Peer, NOW),
        Err(Refused::Invalid(RecordError::Future(_)))
    ));
    let spammer = SigningKey::from_bytes(&[9; 32]).verifying_key().to_bytes();
    c.set_deny(vec![spammer]).unwrap();
    assert!(matches!(
        c.insert(rec(9, 1, "Spam", &[], 1), Origin::Peer, NOW),
        Err(Refused::Publisher)
    ));
    assert!(c.is_empty());
}

#[test]
fn one_publisher_cannot_fill_the_catalogue() {
    let c = Catalog::open(None, NOW).unwrap();
    let key = SigningKey::from_bytes(&[4; 32]);
    for i in 0..MAX_PER_PUBLISHER {
        let mut id = [0u8; 20];
        id[..8].copy_from_slice(&(i as u64).to_be_bytes());
        let d = Description {
            title: format!("flood {i}"),
            ..Description::default()
        };
        let r = Record::sign(&key, InfoHash(id), Kind::Vod, d, NOW, 1).unwrap();
        let bytes = r.encode();
        c.lock().admit(r, &bytes, Origin::Peer, NOW).unwrap();
    }
    assert!(matches!(
        c.insert(rec(4, 0xff, "One more", &[], 1), Origin::Peer, NOW),
        Err(Refused::PublisherFull)
    ));
    c.insert(rec(5, 1, "Someone else", &[], 1), Origin::Peer, NOW)
        .unwrap();
}

/// Publishing a library of 250 records once rewrote and synced the whole file per record
/// (minutes at 5,000 records): now the first is written at once, the rest together by
/// `save_if_dirty`, and what is still unwritten when the catalogue is dropped then.
#[test]
fn own_records_signed_in_a_row_are_written_together() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(CATALOG_FILE);
    let records_on_disk = || {
        let c = Catalog::open(Some(dir.path()), NOW).unwrap();
        let n = c.len();
        std::mem::forget(c); // no save on drop: look at the file only
        n
    };
    let c = Catalog::open(Some(dir.path()), NOW).unwrap();
    c.insert(rec(1, 1, "First", &[], 1), Origin::Own, NOW)
        .unwrap();
    assert_eq!(records_on_disk(), 1, "the first is written at once");
    let written = fs::metadata(&path).unwrap().modified().unwrap();
    for i in 2..=5 {
        c.insert(rec(1, i, "More", &[], 1), Origin::Own, NOW)
            .unwrap();
    }
    assert_eq!(records_on_disk(), 1, "the next within the window wait");
    assert_eq!(fs::metadata(&path).unwrap().modified().unwrap(), written);
    c.save_if_dirty().unwrap();
    assert_eq!(records_on_disk(), 5);
    c.insert(rec(1, 6, "Last", &[], 1), Origin::Own, NOW)
        .unwrap();
    drop(c);
    assert_eq!(records_on_disk(), 6, "dropping writes what is left");
}

/// In the search benchmark a flooder's key answered every query with six records titled
/// with exactly its words, which outscore an honest longer title on text alone: crowding
/// leaves the flooder the first place at most, and the honest record the second.
#[test]
fn one_publisher_cannot_fill_a_page() {
    let c = Catalog::open(None, NOW).unwrap();
    for id in 1..=6 {
        c.insert(rec(9, id, "harbour lights", &[], 1), Origin::Peer, NOW)
            .unwrap();
    }
    c.insert(
        rec(1, 50, "harbour lights over the old town", &[], 1),
        Origin::Peer,
        NOW,
    )
    .unwrap();
    let r = c.search(&query("harbour lights"), NOW);
    assert_eq!(r.hits.len(), 7);
    let publishers: Vec<u8> = r.hits.iter().map(|h| h.entry.record.publisher[0]).collect();
    let honest = publishers.iter().position(|p| *p != publishers[0]).unwrap();
    assert!(honest <= 1, "honest record at {honest}: {publishers:?}");
}

/// Records survive a restart; a torn or corrupt tail costs only what it holds.
#[test]
fn records_are_kept_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let c = Catalog::open(Some(dir.path()), NOW).unwrap();
    c.insert(rec(1, 1, "Kept", &["a"], 1), Origin::Own, NOW)
        .unwrap();
    c.insert(rec(2, 2, "Also kept", &[], 1), Origin::Peer, NOW)
        .unwrap();
    c.set_availability(&InfoHash([2; 20]), 7, NOW);
    c.save().unwrap();
    drop(c);
    let path = dir.path().join(CATALOG_FILE);
    let mut bytes = fs::read(&path).unwrap();
    bytes.extend_from_slice(&[0, 0, 0]);
    fs::write(&path, &bytes).unwrap();
    let c = Catalog::open(Some(dir.path()), NOW).unwrap();
    assert_eq!(c.len(), 2);
    let e = &c.records_for(&InfoHash([2; 20]))[0];
    assert_eq!(e.availability, 7);
    assert_eq!(c.records_for(&InfoHash([1; 20]))[0].origin, Origin::Own);
    assert_eq!(titles(&c.search(&query("kept"), NOW)).len(), 2);
}

/// Between two equal text matches, the one more peers hold ranks first.
#[test]
fn availability_ranks_equal_matches() {
    let c = Catalog::open(None, NOW).unwrap();
    c.insert(rec(1, 1, "Match one", &[], 1), Origin::Peer, NOW)
        .unwrap();
    c.insert(rec(2, 2, "Match two", &[], 1), Origin::Peer, NOW)
        .unwrap();
    c.set_availability(&InfoHash([2; 20]), 50, NOW);
    assert_eq!(
        titles(&c.search(&query("match"), NOW)),
        ["Match two", "Match one"]
    );
    c.set_availability(&InfoHash([1; 20]), 500, NOW);
    assert_eq!(
        titles(&c.search(&query("match"), NOW)),
        ["Match one", "Match two"]
    );
}
