//! Behaviour of the simulator on small scenarios: the same seed gives the same report, a
//! well-provisioned swarm plays smoothly near the source, and a starved one shows it.

use peercdn_sim::{Arrival, Report, Scenario, Sim};

/// Few viewers close together (10–20 ms RTT), everyone reachable, uplinks of 4x the bit
/// rate, no churn: the conditions of `scripts/bench-live.sh` at N = 10, where real processes
/// measured p50/p95 delay 0.57/0.86 s and 100 % continuity.
fn generous(viewers: usize, seconds: f64, seed: u64) -> Scenario {
    Scenario {
        seconds,
        seed,
        viewer_up_mean_x: 4.0,
        viewer_below_share: 0.0,
        nat_share: 0.0,
        churn_per_min: 0.0,
        rtt_ms: (10, 20),
        arrival: Arrival::Steady { over_s: 5.0 },
        ..Scenario::goal(viewers)
    }
}

fn run(sc: Scenario) -> Report {
    let r = Sim::new(sc).run();
    eprintln!("{}", r.table());
    r
}

#[test]
fn same_seed_same_report_other_seed_other_report() {
    let sc = Scenario {
        seconds: 20.0,
        ..Scenario::goal(15)
    };
    let a = run(sc.clone()).without_cost();
    let b = run(sc.clone()).without_cost();
    assert_eq!(
        serde_json::to_string(&a).unwrap(),
        serde_json::to_string(&b).unwrap()
    );
    let c = run(Scenario { seed: 2, ..sc }).without_cost();
    assert_ne!(
        serde_json::to_string(&a).unwrap(),
        serde_json::to_string(&c).unwrap()
    );
}

/// Every viewer starts and plays near the source. Not yet 100 %: viewers arriving while the
/// relay tree forms stall briefly (the simulator shows it between seconds 5 and 10), which
/// is the protocol's to fix, so the worst viewer's bound is looser than the mean's.
#[test]
fn a_well_provisioned_swarm_plays_smoothly_near_the_source() {
    let r = run(generous(10, 30.0, 7));
    assert_eq!(r.never_started, 0);
    assert_eq!(r.sessions, 10);
    assert!(
        r.continuity_mean >= 0.99,
        "mean continuity {}",
        r.continuity_mean
    );
    assert!(
        r.continuity_worst >= 0.95,
        "worst continuity {}",
        r.continuity_worst
    );
    assert!(r.arrival_p95_s <= 1.5, "arrival p95 {}", r.arrival_p95_s);
    assert!(r.delay_p95_s <= 2.0, "p95 delay {}", r.delay_p95_s);
    assert!(r.join_p95_s <= 2.0, "join p95 {}", r.join_p95_s);
    assert!(
        r.source_upload_x <= 2.1,
        "source upload {}x",
        r.source_upload_x
    );
    assert_eq!(r.cdn_share, 0.0);
    assert!(r.p2p_share > 0.99);
    // The source sends each piece to two viewers; the others get it through relays.
    assert!(
        r.depth_p50 >= 1 && r.depth_max >= 2,
        "depth {} / {}",
        r.depth_p50,
        r.depth_max
    );
}

#[test]
fn a_starved_swarm_shows_it() {
    // Viewers upload half the bit rate and the source only 2x: the audience cannot carry
    // the stream.
    let sc = Scenario {
        source_up_bps: 10_000_000,
        viewer_up_mean_x: 0.5,
        viewer_below_share: 1.0,
        ..generous(20, 30.0, 7)
    };
    let r = run(sc);
    assert!(
        r.continuity_mean < 0.9 || r.delay_p95_s > 5.0,
        "continuity {} p95 delay {}",
        r.continuity_mean,
        r.delay_p95_s
    );
}

/// With a CDN, the starved swarm's viewers are rescued by core's fallback policy, and the
/// CDN's bytes are counted apart. (A well-provisioned swarm with a CDN still takes about 30 %
/// of its bytes from it today: the policy's deadline, 0.6 piece durations after a piece is
/// announced, is shorter than a relay hop; the simulator reports it, the policy is core's.)
#[test]
fn a_cdn_rescues_a_starved_swarm() {
    let starved = Scenario {
        source_up_bps: 10_000_000,
        viewer_up_mean_x: 0.5,
        viewer_below_share: 1.0,
        cdn_bps: Some(1_000_000_000),
        ..generous(20, 30.0, 7)
    };
    let r = run(starved);
    assert!(r.cdn_share > 0.2, "cdn share {}", r.cdn_share);
    assert!((r.cdn_share + r.p2p_share - 1.0).abs() < 1e-9);
    assert!(r.continuity_mean > 0.95, "continuity {}", r.continuity_mean);
    assert_eq!(r.never_started, 0);
}

/// Scripts read the report by these keys (the list); renaming one breaks them.
#[test]
fn the_json_report_has_the_keys_scripts_read() {
    let r = run(Scenario {
        seconds: 5.0,
        ..Scenario::goal(5)
    });
    let v: serde_json::Value = serde_json::to_value(&r).unwrap();
    for key in [
        "viewers",
        "delay_p50_s",
        "delay_p95_s",
        "delay_p99_s",
        "join_p95_s",
        "continuity_mean",
        "continuity_worst1pct",
        "source_upload_x",
        "p2p_share",
        "cdn_share",
        "events_per_s",
        "sim_per_wall",
        "bytes_per_viewer",
    ] {
        assert!(v.get(key).is_some_and(|x| x.is_number()), "{key} missing");
    }
}

/// A choke must not cut off a piece on its way. At 5 Mbit/s a 250 ms piece is ten blocks,
/// more than a requester first puts in flight to a peer; a peer choked after its first eight
/// requests asked nobody for the last two, and at the source, whose copies are capped, nobody
/// else could get them: the piece in flight at each of the source's rechokes was missing at
/// every viewer (83.7 % mean continuity in this run, 99.9 % since the fix).
#[test]
fn no_piece_is_lost_to_a_choke_at_five_megabits() {
    let r = run(Scenario {
        seconds: 30.0,
        bitrate_bps: 5_000_000,
        source_up_bps: 15_000_000,
        ..Scenario::bench_live(20)
    });
    assert_eq!(r.never_started, 0);
    assert!(
        r.continuity_mean >= 0.98 && r.continuity_worst1pct >= 0.95,
        "continuity mean {} worst 1 % {}",
        r.continuity_mean,
        r.continuity_worst1pct
    );
}

/// Every viewer behind NAT: nobody can dial a viewer, so viewers meet only through BEP 55
/// introductions by a peer both are connected to (the source, at first). With NATs that let
/// introductions through, viewers connect to each other and relay the stream; with NATs that
/// do not, every viewer hangs on the source alone, which carries two copies of each piece.
#[test]
fn viewers_behind_nat_meet_through_introductions() {
    let sc = |punch_share| Scenario {
        nat_share: 1.0,
        punch_share,
        ..generous(12, 30.0, 3)
    };
    let punched = run(sc(1.0));
    let closed = run(sc(0.0));
    assert_eq!(closed.holepunched_connections, 0);
    // The source is every viewer's only connection.
    assert!(closed.connections <= 12 * 2, "{}", closed.connections);
    assert!(
        punched.holepunched_connections >= 12,
        "{} introductions",
        punched.holepunched_connections
    );
    assert!(
        punched.depth_max >= 2 && punched.continuity_mean > closed.continuity_mean,
        "depth {}, continuity {} against {}",
        punched.depth_max,
        punched.continuity_mean,
        closed.continuity_mean
    );
}
