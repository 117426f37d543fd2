//! One sender's huge message does not hold up another sender's ACK.

use std::time::Duration;

use crate::common::{adt, code, config, Engine};

/// An ORU with `groups` OBR/OBX pairs, about 70 bytes a group.
fn big_oru(control_id: &str, groups: usize) -> String {
    let mut m = format!(
        "MSH|^~\\&|WINPATH|RJ1LAB|RECORDHUB|LCR|20261120151000||ORU^R01^ORU_R01|{control_id}|P|2.4\r\
         PID|1||9449305552^^^NHS^NH||JONES^MARY||19800101|F\r"
    );
    for i in 0..groups {
        m.push_str(&format!(
            "OBR|{i}|P{i}|F{i}^LAB|K^Potassium^L|||20261120150000|||||||||||||||20261120151000|||F\r\
             OBX|1|NM|K^Potassium^L||4.{}|mmol/L|3.5-5.3|N|||F\r",
            i % 10
        ));
    }
    m
}

/// Hole 10: a 15.5 MB ORU took 251 s to map and another sender's ADT waited
/// behind it on the one pipeline thread. Now a large frame is mapped off
/// that thread, so the small message sent while the large one maps is
/// answered first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_message_is_not_held_up_behind_another_senders_huge_one() {
    let dir = tempfile::tempdir().unwrap();
    let e = Engine::start(config(dir.path())).await;
    let mut lab = e.connect_from("127.0.0.2").await;
    let mut pas = e.connect().await;
    let huge = big_oru("HUGE1", 20_000);
    assert!(huge.len() > 2 << 20, "{} bytes", huge.len());
    lab.send(&huge).await;
    // Give the engine the whole frame before the small one arrives.
    tokio::time::sleep(Duration::from_millis(150)).await;
    let small = tokio::spawn(async move { pas.call(&adt("SMALL1")).await });
    let big = tokio::spawn(async move { lab.ack_within(Duration::from_secs(120)).await });
    let small_ack = tokio::time::timeout(Duration::from_secs(60), small).await.unwrap().unwrap();
    assert_eq!(code(&small_ack), "AA");
    assert!(!big.is_finished(), "the small message was answered while the huge one was still being mapped");
    let big_ack = big.await.unwrap().expect("the huge message is answered too");
    assert_eq!(code(&big_ack), "AA", "{big_ack}");
    e.stop().await;
}
