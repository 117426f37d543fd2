use super::*;
use crate::mllp::admission::ConnectionCounts;
use crate::telemetry::LogStats;

fn msg<'a>(app: &'a str, t: &'a str) -> MessageLabels<'a> {
    MessageLabels { msg_type: t, sending_app: app, sending_facility: "F", verdict: "accepted", duplicate: false }
}

fn scrape() -> Scrape {
    Scrape {
        journal: JournalSize::default(),
        index_lag: 0,
        unindexed: Some(0),
        refused: 0,
        connections: ConnectionCounts::default(),
        log: LogStats::default(),
        charset_fallbacks: 0,
        health: vec![("journal", true)],
        ready: vec![],
        cluster: None,
    }
}

#[test]
fn a_sender_flood_is_capped_at_max_senders_then_counted_as_other() {
    let m = Metrics::new();
    for i in 0..MAX_SENDERS + 50 {
        m.message(&msg(&format!("APP{i}"), "ADT^A01"), None, Duration::ZERO);
    }
    let text = m.render(&scrape());
    let series = text.lines().filter(|l| l.starts_with("recordhub_messages_total{")).count();
    assert_eq!(series, MAX_SENDERS + 1, "{MAX_SENDERS} named senders and one `other`");
    assert!(
        text.contains(
            "sending_app=\"other\",sending_facility=\"other\",verdict=\"accepted\",duplicate=\"false\"} 50\n"
        ),
        "{text}"
    );
}

#[test]
fn label_values_are_cut_and_escaped() {
    let m = Metrics::new();
    let long = "A\"B\\".repeat(40);
    m.message(&msg(&long, ""), Some(207), Duration::ZERO);
    let text = m.render(&scrape());
    assert!(text.contains("msg_type=\"none\""), "{text}");
    assert!(text.contains("sending_app=\"A\\\"B\\\\A\\\"B"), "{text}");
    assert!(text.contains("recordhub_naks_total{code=\"207\"} 1\n"), "{text}");
}

#[test]
fn when_disabled_nothing_is_recorded() {
    let m = Metrics::new();
    m.set_enabled(false);
    m.message(&msg("A", "ADT^A01"), None, Duration::ZERO);
    m.commit(3, Duration::ZERO);
    let text = m.render(&scrape());
    assert!(!text.contains("recordhub_messages_total{"), "{text}");
    assert!(text.contains("recordhub_journal_commit_seconds_count 0\n"), "{text}");
}

#[test]
fn cluster_gauges_appear_only_on_a_cluster_node() {
    let m = Metrics::new();
    let single = m.render(&scrape());
    assert!(!single.contains("recordhub_cluster_"), "{single}");
    let state = crate::cluster::ClusterState::default();
    state.set_part(crate::cluster::Part::Active);
    state.set_committed(12);
    state.set_published(9);
    state.set_lease_revision(7);
    state.set_nats_connected(true);
    let text = m.render(&Scrape { cluster: Some(state), ..scrape() });
    for line in [
        "recordhub_cluster_part{part=\"active\"} 1\n",
        "recordhub_cluster_part{part=\"following\"} 0\n",
        "recordhub_cluster_part{part=\"stood_down\"} 0\n",
        "recordhub_cluster_publish_lag 3\n",
        "recordhub_cluster_published_seq 9\n",
        "recordhub_cluster_follow_lag 0\n",
        "recordhub_cluster_stream_last_seq 0\n",
        "recordhub_cluster_lease_revision 7\n",
        "recordhub_cluster_nats_connected 1\n",
    ] {
        assert!(text.contains(line), "missing {line:?} in\n{text}");
    }
}
