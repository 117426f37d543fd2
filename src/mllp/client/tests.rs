use super::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const SECOND: Duration = Duration::from_secs(5);

/// What the test server does with each connection.
#[derive(Clone, Copy)]
enum Behaviour {
    /// Answer every frame with an AA echoing its MSH-10.
    Ack,
    /// Read, never answer.
    Silent,
    /// Close right after the first frame arrives.
    CloseAfterFirst,
    /// Send half a frame, then close.
    HalfFrame,
}

/// A tiny MLLP server on 127.0.0.1:0, one connection.
async fn server(behaviour: Behaviour) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        let (socket, _) = listener.accept().await.unwrap();
        let mut framed = Framed::new(socket, MllpCodec::new(MAX_ACK_BYTES));
        while let Some(Ok(Frame::Message(msg))) = framed.next().await {
            match behaviour {
                Behaviour::Ack => {
                    let control_id = msg[..].split(|&b| b == b'|').nth(9).unwrap_or(b"");
                    let mut ack = b"MSH|^~\\&|HUB|X|||20250101||ACK|A1|P|2.5\rMSA|AA|".to_vec();
                    ack.extend_from_slice(control_id);
                    ack.push(b'\r');
                    framed.send(&ack[..]).await.unwrap();
                }
                Behaviour::Silent => {}
                Behaviour::CloseAfterFirst => return,
                Behaviour::HalfFrame => {
                    let mut socket = framed.into_inner();
                    socket.write_all(b"\x0bMSH|^~\\&|HU").await.unwrap();
                    return;
                }
            }
        }
    });
    addr
}

fn message(control_id: &str) -> Vec<u8> {
    format!("MSH|^~\\&|LAB|H|HUB|X|20250101||ORU^R01|{control_id}|P|2.5\rPID|1\r").into_bytes()
}

#[tokio::test]
async fn call_round_trips() {
    let addr = server(Behaviour::Ack).await;
    let mut client = MllpClient::connect(&addr, SECOND).await.unwrap();
    let ack = client.call(&message("C1"), SECOND).await.unwrap();
    assert_eq!(&ack[..], b"MSH|^~\\&|HUB|X|||20250101||ACK|A1|P|2.5\rMSA|AA|C1\r");
    let summary = summarize_ack(&ack).unwrap();
    assert_eq!((summary.code.as_str(), summary.control_id.as_str()), ("AA", "C1"));
}

#[tokio::test]
async fn pipelined_acks_come_back_in_order() {
    let addr = server(Behaviour::Ack).await;
    let mut client = MllpClient::connect(&addr, SECOND).await.unwrap();
    for id in ["P1", "P2", "P3"] {
        client.send(&message(id)).await.unwrap();
    }
    for id in ["P1", "P2", "P3"] {
        let ack = client.recv_ack(SECOND).await.unwrap();
        assert_eq!(summarize_ack(&ack).unwrap().control_id, id);
    }
}

#[tokio::test]
async fn recv_ack_times_out() {
    let addr = server(Behaviour::Silent).await;
    let mut client = MllpClient::connect(&addr, SECOND).await.unwrap();
    let timeout = Duration::from_millis(50);
    let err = client.call(&message("T1"), timeout).await.unwrap_err();
    assert!(matches!(err, ClientError::Timeout { after } if after == timeout), "{err:?}");
}

#[tokio::test]
async fn closed_is_reported() {
    let addr = server(Behaviour::CloseAfterFirst).await;
    let mut client = MllpClient::connect(&addr, SECOND).await.unwrap();
    let err = client.call(&message("X1"), SECOND).await.unwrap_err();
    assert!(matches!(err, ClientError::Closed), "{err:?}");
    assert_eq!(err.to_string(), "the server closed the connection before acknowledging");
}

#[tokio::test]
async fn close_mid_frame_is_a_frame_error() {
    let addr = server(Behaviour::HalfFrame).await;
    let mut client = MllpClient::connect(&addr, SECOND).await.unwrap();
    let err = client.call(&message("H1"), SECOND).await.unwrap_err();
    assert!(matches!(err, ClientError::Frame(FrameError::Truncated(11))), "{err:?}");
}

#[tokio::test]
async fn connect_refused_names_the_address() {
    // Bind then drop, so the port is (almost certainly) closed.
    let addr = {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        listener.local_addr().unwrap().to_string()
    };
    let err = MllpClient::connect(&addr, SECOND).await.unwrap_err();
    assert!(matches!(err, ClientError::Connect { .. }), "{err:?}");
    assert!(err.to_string().contains(&addr));
}

#[tokio::test]
async fn raw_bytes_on_the_wire() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let server = tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.unwrap();
        let mut got = vec![0; 9];
        socket.read_exact(&mut got).await.unwrap();
        // Junk before the ACK, and FS without CR followed by close: FS at
        // EOF ends the frame.
        socket.write_all(b"\r\n\x0bMSA|AA|1\x1c").await.unwrap();
        got
    });
    let mut client = MllpClient::connect(&addr, SECOND).await.unwrap();
    let ack = client.call(b"MSH|x\r", SECOND).await.unwrap();
    assert_eq!(&ack[..], b"MSA|AA|1");
    assert_eq!(server.await.unwrap(), b"\x0bMSH|x\r\x1c\r");
}

/// Issue 12: `send` printed `\F\` where the ERR text held a `|`.
#[test]
fn ack_text_is_printed_with_escapes_decoded() {
    let ack = b"MSH|^~\\&|HUB|X|||20250101||ACK|A1|P|2.5\rMSA|AE|C7\rERR||PID^1^3|101^Required^HL70357|E||||PID-3 \\F\\ NHS\\T\\MRN missing\r";
    let s = summarize_ack(ack).unwrap();
    assert_eq!((s.code.as_str(), s.control_id.as_str()), ("AE", "C7"));
    assert_eq!(s.text, "PID-3 | NHS&MRN missing");
}

#[test]
fn summary_of_an_original_mode_ack() {
    let ack = b"MSH|^~\\&|HUB|X|LAB|H|20250101||ACK^R01^ACK|A1|P|2.4\rMSA|AE|C9|PID-3 missing\r";
    let s = summarize_ack(ack).unwrap();
    assert_eq!(s, AckSummary { code: "AE".into(), control_id: "C9".into(), text: "PID-3 missing".into() });
}

#[test]
fn summary_prefers_err_8_then_err_3_2() {
    let ack =
        b"MSH|^~\\&|H|X\nMSA|AR|C1\nERR||MSH^1^9|200^Unsupported message type^HL70357|E||||no mapping for ZZZ^Z01\n";
    assert_eq!(summarize_ack(ack).unwrap().text, "no mapping for ZZZ^Z01");
    let ack = b"MSH|^~\\&|H|X\rMSA|AR|C1\rERR||MSH^1^9|200^Unsupported message type^HL70357|E\r";
    assert_eq!(summarize_ack(ack).unwrap().text, "Unsupported message type");
}

#[test]
fn summary_reads_pre_2_5_err_1() {
    let ack = b"MSH|^~\\&|H|X\rMSA|AE|C1\rERR|PID^1^3^101&Required field missing&HL70357\r";
    assert_eq!(summarize_ack(ack).unwrap().text, "Required field missing");
}

#[test]
fn summary_with_custom_delimiters() {
    let ack = b"MSH#@!$%#H#X\rMSA#CE#C7\rERR###207@Application internal error@HL70357\r";
    let s = summarize_ack(ack).unwrap();
    assert_eq!((s.code.as_str(), s.control_id.as_str()), ("CE", "C7"));
    assert_eq!(s.text, "Application internal error");
}

#[test]
fn summary_needs_msh_and_msa() {
    assert_eq!(summarize_ack(b""), None);
    assert_eq!(summarize_ack(b"MSA|AA|1\r"), None);
    assert_eq!(summarize_ack(b"MSH|^~\\&|H\rMSAX|AA\r"), None);
    assert_eq!(summarize_ack(b"MSH|"), None);
}
