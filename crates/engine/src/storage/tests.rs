//! Tests of the storage layer: layouts, pad files, corruption, resume, full disk.
use super::*;
use peercdn_core::metainfo::FileEntry;

/// An info over `files` (path, length, pad) with pieces hashed from `data` (pad ranges zero).
fn make(name: &str, files: &[(&[&str], u64, bool)], pl: u32, seed: u8) -> (Info, Vec<u8>) {
    let mut entries = Vec::new();
    let mut data = Vec::new();
    let mut offset = 0;
    for (i, (path, len, pad)) in files.iter().enumerate() {
        entries.push(FileEntry {
            path: path.iter().map(|s| s.to_string()).collect(),
            length: *len,
            offset,
            pad: *pad,
        });
        for k in 0..*len {
            data.push(if *pad {
                0
            } else {
                (k as u8).wrapping_mul(31) ^ seed ^ i as u8
            });
        }
        offset += len;
    }
    let pieces = data.chunks(pl as usize).map(sha1_piece).collect();
    let multi_file = !(files.len() == 1 && files[0].0.is_empty());
    let info = Info {
        name: name.into(),
        piece_length: pl,
        pieces,
        files: entries,
        private: false,
        multi_file,
    };
    (info, data)
}

fn write_all(st: &Storage, data: &[u8], pl: u32) {
    for (i, piece) in data.chunks(pl as usize).enumerate() {
        st.write_piece(i as u32, piece).unwrap();
    }
}

fn multi() -> (Info, Vec<u8>) {
    // Odd piece length; files straddle piece boundaries; a zero-length file and a pad file.
    make(
        "multi",
        &[
            (&["a.bin"], 1000, false),
            (&["sub", "empty"], 0, false),
            (&["sub", "b.bin"], 77, false),
            (&[".pad", "123"], 123, true),
            (&["sub", "deep", "c.bin"], 2500, false),
        ],
        333,
        7,
    )
}

#[test]
fn storage_is_send_sync() {
    fn check<T: Send + Sync>() {}
    check::<Storage>();
}

#[test]
fn single_file_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let (info, data) = make("one.bin", &[(&[], 10_001, false)], 1024, 3);
    let st = Storage::open(dir.path(), &info).unwrap();
    assert_eq!(st.num_pieces(), 10);
    assert_eq!(st.piece_len(9), 10_001 - 9 * 1024);
    write_all(&st, &data, 1024);
    st.flush().unwrap();
    let on_disk = std::fs::read(dir.path().join("one.bin")).unwrap();
    assert_eq!(on_disk, data);
    let mut block = vec![0; 100];
    st.read(9, 700, &mut block[..17]).unwrap();
    assert_eq!(&block[..17], &data[9 * 1024 + 700..9 * 1024 + 717]);
    assert!(
        st.read(9, 700, &mut block).is_err(),
        "past the end of the last piece"
    );
    assert!(matches!(
        st.read(10, 0, &mut block),
        Err(StorageError::BadPiece { .. })
    ));
    assert!(st.check_all(&mut |_, _| {}).unwrap().is_full());
}

#[test]
fn multi_file_round_trip_across_boundaries() {
    let dir = tempfile::tempdir().unwrap();
    let (info, data) = multi();
    let st = Storage::open(dir.path(), &info).unwrap();
    let base = dir.path().join("multi");
    assert!(
        base.join("sub/empty").is_file(),
        "zero-length files are created"
    );
    write_all(&st, &data, 333);
    st.flush().unwrap();
    assert_eq!(std::fs::read(base.join("a.bin")).unwrap(), data[..1000]);
    assert_eq!(
        std::fs::read(base.join("sub/b.bin")).unwrap(),
        data[1000..1077]
    );
    assert_eq!(
        std::fs::read(base.join("sub/deep/c.bin")).unwrap(),
        data[1200..]
    );
    assert!(!base.join(".pad").exists(), "pad files are never created");
    // Every block, read back piece by piece in odd-sized blocks, matches.
    for i in 0..st.num_pieces() {
        let len = st.piece_len(i);
        let mut begin = 0;
        while begin < len {
            let n = (len - begin).min(100);
            let mut buf = vec![0xaa; n as usize];
            st.read(i, begin, &mut buf).unwrap();
            let at = (i * 333 + begin) as usize;
            assert_eq!(buf, data[at..at + n as usize], "piece {i} begin {begin}");
            begin += n;
        }
        assert!(st.verify_piece(i).unwrap());
    }
    assert!(st.check_all(&mut |_, _| {}).unwrap().is_full());
}

#[test]
fn corrupted_byte_detected() {
    let dir = tempfile::tempdir().unwrap();
    let (info, data) = multi();
    let st = Storage::open(dir.path(), &info).unwrap();
    write_all(&st, &data, 333);
    st.flush().unwrap();
    // Byte 1500 of the torrent is byte 300 of c.bin, in piece 4.
    let c = dir.path().join("multi/sub/deep/c.bin");
    let f = OpenOptions::new().write(true).open(&c).unwrap();
    f.write_all_at(&[data[1500] ^ 1], 300).unwrap();
    assert!(!st.verify_piece(4).unwrap());
    assert!(st.verify_piece(3).unwrap());
    let mut calls = 0;
    let have = st.check_all(&mut |_, _| calls += 1).unwrap();
    assert_eq!(calls, st.num_pieces());
    assert_eq!(have.count(), st.num_pieces() - 1);
    assert!(!have.get(4));
}

#[test]
fn missing_and_short_files() {
    let dir = tempfile::tempdir().unwrap();
    let (info, data) = multi();
    let st = Storage::open(dir.path(), &info).unwrap();
    let mut buf = [0u8; 10];
    assert!(matches!(
        st.read(0, 0, &mut buf),
        Err(StorageError::Missing { .. })
    ));
    assert!(!st.verify_piece(0).unwrap());
    assert_eq!(st.check_all(&mut |_, _| {}).unwrap().count(), 0);
    // A file shorter than the torrent says: reading past its end is Missing.
    std::fs::write(dir.path().join("multi/a.bin"), &data[..500]).unwrap();
    assert!(st.verify_piece(0).unwrap());
    assert!(matches!(
        st.read(1, 300, &mut buf),
        Err(StorageError::Missing { .. })
    ));
    assert!(!st.verify_piece(1).unwrap());
}

#[test]
fn sparse_preallocation_and_holes() {
    let dir = tempfile::tempdir().unwrap();
    let (info, data) = make("one.bin", &[(&[], 40 * 16384 + 5, false)], 16384, 9);
    let st = Storage::open(dir.path(), &info).unwrap();
    st.write_piece(3, &data[3 * 16384..4 * 16384]).unwrap();
    let len = std::fs::metadata(dir.path().join("one.bin")).unwrap().len();
    assert_eq!(
        len,
        data.len() as u64,
        "extended to exactly the torrent length"
    );
    let have = st.check_all(&mut |_, _| {}).unwrap();
    assert_eq!(have.ones().collect::<Vec<_>>(), vec![3]);
    // A piece of zeros stored as a hole still verifies.
    let (zinfo, _) = make("z", &[(&[], 0, false)], 16384, 0);
    let mut zinfo = zinfo;
    zinfo.files[0].length = 3 * 16384;
    zinfo.pieces = vec![zero_hash(16384); 3];
    zinfo.name = "zeros.bin".into();
    let zs = Storage::open(dir.path(), &zinfo).unwrap();
    File::create(dir.path().join("zeros.bin"))
        .unwrap()
        .set_len(3 * 16384)
        .unwrap();
    assert!(zs.check_all(&mut |_, _| {}).unwrap().is_full());
}

#[test]
fn existing_data_not_truncated() {
    let dir = tempfile::tempdir().unwrap();
    let (info, data) = multi();
    std::fs::create_dir_all(dir.path().join("multi")).unwrap();
    std::fs::write(dir.path().join("multi/a.bin"), &data[..1000]).unwrap();
    let st = Storage::open(dir.path(), &info).unwrap();
    st.write_piece(4, &data[4 * 333..5 * 333]).unwrap();
    assert_eq!(
        std::fs::read(dir.path().join("multi/a.bin")).unwrap(),
        data[..1000]
    );
    assert!(st.verify_piece(0).unwrap());
}

#[test]
fn bad_path_refused_and_nothing_created() {
    for bad in ["..", ".", "", "a/b", "a\\b", "nul\0"] {
        let dir = tempfile::tempdir().unwrap();
        let (mut info, _) = multi();
        info.files[4].path = vec!["ok".into(), bad.into()];
        let err = Storage::open(dir.path(), &info).unwrap_err();
        assert!(matches!(err, StorageError::BadPath(_)), "{bad:?}: {err}");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0, "{bad:?}");
    }
    let dir = tempfile::tempdir().unwrap();
    let (mut info, _) = make("x", &[(&[], 10, false)], 16, 0);
    info.name = "../escape".into();
    assert!(matches!(
        Storage::open(dir.path(), &info),
        Err(StorageError::BadPath(_))
    ));
}

#[test]
fn inconsistent_layouts_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (mut info, _) = multi();
    info.pieces.pop();
    assert!(matches!(
        Storage::open(dir.path(), &info),
        Err(StorageError::BadLayout(_))
    ));
    let (mut info, _) = multi();
    info.files[2].path = info.files[0].path.clone();
    assert!(matches!(
        Storage::open(dir.path(), &info),
        Err(StorageError::BadLayout(_))
    ));
    let (mut info, _) = multi();
    info.piece_length = 0;
    assert!(matches!(
        Storage::open(dir.path(), &info),
        Err(StorageError::BadLayout(_))
    ));
}

#[test]
fn bad_piece_data_length_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (info, data) = multi();
    let st = Storage::open(dir.path(), &info).unwrap();
    assert!(matches!(
        st.write_piece(0, &data[..332]),
        Err(StorageError::BadRange { .. })
    ));
    assert!(matches!(
        st.write_piece(99, &data[..333]),
        Err(StorageError::BadPiece { .. })
    ));
}

#[test]
fn enospc_and_edquot_map_to_disk_full() {
    for code in [libc::ENOSPC, libc::EDQUOT] {
        let e = io_error(Path::new("/x"), io::Error::from_raw_os_error(code));
        assert!(matches!(e, StorageError::DiskFull { .. }), "{e}");
        assert!(e.to_string().contains("disk full"));
    }
    let e = io_error(Path::new("/x"), io::Error::from_raw_os_error(libc::EACCES));
    assert!(matches!(e, StorageError::Io { .. }));
}

#[test]
fn dev_full_write_is_disk_full() {
    let full = Path::new("/dev/full");
    let Ok(f) = OpenOptions::new().write(true).open(full) else {
        return;
    };
    let err = f.write_all_at(&[1, 2, 3], 0).unwrap_err();
    assert!(matches!(io_error(full, err), StorageError::DiskFull { .. }));
}

#[test]
fn handle_cache_is_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let names: Vec<String> = (0..200).map(|i| format!("f{i:03}")).collect();
    let paths: Vec<[&str; 1]> = names.iter().map(|n| [n.as_str()]).collect();
    let spec: Vec<(&[&str], u64, bool)> = paths.iter().map(|p| (&p[..], 7, false)).collect();
    let (info, data) = make("many", &spec, 64, 1);
    let st = Storage::open(dir.path(), &info).unwrap();
    write_all(&st, &data, 64);
    assert!(st.handles.lock().unwrap().map.len() <= MAX_OPEN_FILES);
    st.flush().unwrap();
    assert!(st.check_all(&mut |_, _| {}).unwrap().is_full());
}

#[test]
fn resume_trusted_when_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let (info, data) = multi();
    let st = Storage::open(dir.path(), &info).unwrap();
    write_all(&st, &data, 333);
    let have = st.check_all(&mut |_, _| {}).unwrap();
    let rpath = dir.path().join("resume");
    Resume::save(&rpath, "ab", &have, &st).unwrap();
    assert!(!dir.path().join("resume.tmp").exists());
    // Trusted: a piece claimed by the resume data is not re-read.
    let (_, fp, r) = Resume::load(&rpath, st.num_pieces()).unwrap();
    assert_eq!(fp, fingerprint(&info));
    assert_eq!(r.have, have);
    let got = Resume::load_and_check(&rpath, &info, &st, &mut |_, _| {}).unwrap();
    assert!(got.is_full());
    // Proof that it is trusted: corrupt piece 4 behind its back, keeping size and mtime.
    let c = dir.path().join("multi/sub/deep/c.bin");
    let mtime = std::fs::metadata(&c).unwrap().modified().unwrap();
    let f = OpenOptions::new().write(true).open(&c).unwrap();
    f.write_all_at(&[data[1500] ^ 1], 300).unwrap();
    f.set_modified(mtime).unwrap();
    let got = Resume::load_and_check(&rpath, &info, &st, &mut |_, _| {}).unwrap();
    assert!(got.get(4), "resume data trusted");
    assert!(!st.check_all(&mut |_, _| {}).unwrap().get(4));
}

#[test]
fn concurrent_writers_share_one_storage() {
    let dir = tempfile::tempdir().unwrap();
    let (info, data) = multi();
    let st = Arc::new(Storage::open(dir.path(), &info).unwrap());
    let data = Arc::new(data);
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let (st, data) = (st.clone(), data.clone());
            std::thread::spawn(move || {
                for (i, piece) in data.chunks(333).enumerate().skip(t).step_by(4) {
                    st.write_piece(i as u32, piece).unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    st.flush().unwrap();
    assert!(st.check_all(&mut |_, _| {}).unwrap().is_full());
}

#[test]
fn resume_finds_pieces_written_after_save() {
    let dir = tempfile::tempdir().unwrap();
    let (info, data) = multi();
    let rpath = dir.path().join("resume");
    {
        let st = Storage::open(dir.path(), &info).unwrap();
        st.write_piece(0, &data[..333]).unwrap();
        let mut have = Bitfield::new(st.num_pieces());
        have.set(0, true);
        Resume::save(&rpath, "ab", &have, &st).unwrap();
        // Then a "kill": pieces written, no save.
        st.write_piece(2, &data[666..999]).unwrap();
        st.write_piece(5, &data[5 * 333..6 * 333]).unwrap();
    }
    let st = Storage::open(dir.path(), &info).unwrap();
    let got = Resume::load_and_check(&rpath, &info, &st, &mut |_, _| {}).unwrap();
    assert_eq!(got.ones().collect::<Vec<_>>(), vec![0, 2, 5]);
    // Without any resume file: a full check finds the same.
    let none = dir.path().join("nope");
    let got = Resume::load_and_check(&none, &info, &st, &mut |_, _| {}).unwrap();
    assert_eq!(got.ones().collect::<Vec<_>>(), vec![0, 2, 5]);
}

#[test]
fn stale_or_garbage_resume_rechecks() {
    let dir = tempfile::tempdir().unwrap();
    let (info, data) = multi();
    let st = Storage::open(dir.path(), &info).unwrap();
    write_all(&st, &data, 333);
    let rpath = dir.path().join("resume");
    // Claims everything, but then a file changes size: the claim must not be trusted.
    Resume::save(&rpath, "ab", &Bitfield::full(st.num_pieces()), &st).unwrap();
    let a = OpenOptions::new()
        .write(true)
        .open(dir.path().join("multi/a.bin"))
        .unwrap();
    a.set_len(10).unwrap();
    let got = Resume::load_and_check(&rpath, &info, &st, &mut |_, _| {}).unwrap();
    assert!(!got.get(0) && !got.get(2) && got.get(4));
    // Garbage and a different torrent are ignored.
    for junk in ["", "peercdn-resume 1\ninfo_hash x\n", "\u{0}\u{1}garbage"] {
        std::fs::write(&rpath, junk).unwrap();
        let got = Resume::load_and_check(&rpath, &info, &st, &mut |_, _| {}).unwrap();
        assert!(!got.get(0) && got.get(4));
    }
    let (other, _) = make("multi", &[(&["a.bin"], 3577, false)], 333, 1);
    assert!(parse_resume(&std::fs::read_to_string(&rpath).unwrap(), 11).is_none());
    let ost = Storage::open(dir.path(), &other).unwrap();
    Resume::save(&rpath, "cd", &Bitfield::full(ost.num_pieces()), &ost).unwrap();
    let got = Resume::load_and_check(&rpath, &info, &st, &mut |_, _| {}).unwrap();
    assert!(!got.get(0) && got.get(4));
}
