//! Property tests of the codecs and parsers that take hostile input (issue 15, "Hostile input,
//! by machine"): encode -> decode round trips of every wire format, streaming decoders fed in
//! pieces cut anywhere giving what they give for the whole input, and parsers that never panic.
//! The coverage-guided fuzz targets of the same code are in `fuzz/`.
//!
//! Each property runs at most 128 cases so that the whole file stays well under a second or
//! two; `PROPTEST_CASES=10000 cargo nextest run --test properties` runs more.

use std::path::Path;

use activestack_gateway::config::{Config, Origin, Origins};
use activestack_gateway::console::Command as ConsoleCommand;
use activestack_gateway::gateway::Audience;
use activestack_gateway::gateway::session::Session;
use activestack_gateway::gateway::wire::engineio::{
    self as eio, EioPacket, EioVersion, SioPacket, decode_eio, decode_sio,
};
use activestack_gateway::gateway::wire::legacy::{self, AckRequest, Packet};
use activestack_gateway::gateway::wire::websocket::{self, Decoder, Message};
use activestack_gateway::ipc::{self, Decoded, ToMaster, ToWorker, WorkerReport};
use activestack_gateway::realtime::protocol::{Command, Method, split_frame};
use proptest::prelude::*;
use serde_json::{Value, json};

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 128,
        ..ProptestConfig::default()
    }
}

/// JSON values without floats (whose text form need not give the same bits back).
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<String>().prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(any::<String>(), inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn json_object() -> impl Strategy<Value = Value> {
    prop::collection::btree_map(any::<String>(), json_value(), 0..4)
        .prop_map(|m| Value::Object(m.into_iter().collect()))
}

fn parsed(raw: &serde_json::value::RawValue) -> Value {
    serde_json::from_str(raw.get()).expect("raw JSON from the decoder")
}

/// `bytes` cut at the given points (each taken modulo the length, duplicates allowed).
fn cut<'a>(bytes: &'a [u8], cuts: &[usize]) -> Vec<&'a [u8]> {
    let mut at: Vec<usize> = cuts
        .iter()
        .map(|c| c % (bytes.len() + 1))
        .chain([0, bytes.len()])
        .collect();
    at.sort_unstable();
    at.windows(2).map(|w| &bytes[w[0]..w[1]]).collect()
}

// ---- socket.io v4/v5 (engine.io 3/4) ----

const RESERVED: [&str; 6] = [
    "connect",
    "connect_error",
    "disconnect",
    "disconnecting",
    "newListener",
    "removeListener",
];

fn namespace() -> impl Strategy<Value = String> {
    prop_oneof![Just("/".to_string()), "/[a-zA-Z0-9_?=&-]{1,12}"]
}

fn event_name() -> impl Strategy<Value = String> {
    any::<String>().prop_filter("reserved", |n| !RESERVED.contains(&n.as_str()))
}

/// The socket.io packet inside one engine.io text message the server wrote.
fn sio_of(text: &str) -> SioPacket<'_> {
    match decode_eio(text).expect("an engine.io packet") {
        EioPacket::Message(sio) => decode_sio(sio).expect("a socket.io packet"),
        other => panic!("not a message: {other:?}"),
    }
}

fn text_of(write: impl FnOnce(&mut Vec<u8>)) -> String {
    let mut out = Vec::new();
    write(&mut out);
    String::from_utf8(out).expect("packets are UTF-8")
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn v4_events_round_trip(nsp in namespace(), name in event_name(), data in json_value()) {
        let text = text_of(|out| {
            eio::encode_event_value(&nsp, &name, &data, out).expect("encodable")
        });
        let raw = text_of(|out| {
            eio::encode_event(&nsp, &name, data.to_string().as_bytes(), out)
        });
        prop_assert_eq!(&text, &raw);
        match sio_of(&text) {
            SioPacket::Event { nsp: got_nsp, id, name: got_name, args } => {
                prop_assert_eq!(got_nsp, nsp.as_str());
                prop_assert_eq!(id, None);
                prop_assert_eq!(got_name.as_ref(), name.as_str());
                prop_assert_eq!(args.len(), 1);
                prop_assert_eq!(parsed(args[0]), data);
            }
            other => prop_assert!(false, "{other:?}"),
        }
    }

    #[test]
    fn v4_acks_round_trip(
        nsp in namespace(),
        id in any::<u64>(),
        args in prop::collection::vec(json_value(), 0..4),
    ) {
        let text = text_of(|out| {
            eio::encode_ack(&nsp, id, Value::Array(args.clone()).to_string().as_bytes(), out)
        });
        match sio_of(&text) {
            SioPacket::Ack { nsp: got_nsp, id: got_id, args: got } => {
                prop_assert_eq!(got_nsp, nsp.as_str());
                prop_assert_eq!(got_id, id);
                prop_assert_eq!(got.into_iter().map(parsed).collect::<Vec<_>>(), args);
            }
            other => prop_assert!(false, "{other:?}"),
        }
    }

    #[test]
    fn v4_connects_and_errors_round_trip(
        nsp in namespace(),
        sid in "[A-Za-z0-9_-]{1,24}",
        message in any::<String>(),
        v4 in any::<bool>(),
    ) {
        let version = if v4 { EioVersion::V4 } else { EioVersion::V3 };
        let text = text_of(|out| eio::encode_connect(&nsp, &sid, version, out));
        match sio_of(&text) {
            SioPacket::Connect { nsp: got, auth } => {
                prop_assert_eq!(got, nsp.as_str());
                match version {
                    EioVersion::V4 => prop_assert_eq!(
                        auth.map(parsed),
                        Some(json!({ "sid": sid }))
                    ),
                    EioVersion::V3 => prop_assert!(auth.is_none()),
                }
            }
            other => prop_assert!(false, "{other:?}"),
        }
        let text = text_of(|out| eio::encode_connect_error(&nsp, &message, version, out));
        match sio_of(&text) {
            SioPacket::ConnectError { nsp: got, data } => {
                prop_assert_eq!(got, nsp.as_str());
                let want = match version {
                    EioVersion::V4 => json!({ "message": message }),
                    EioVersion::V3 => json!(message),
                };
                prop_assert_eq!(data.map(parsed), Some(want));
            }
            other => prop_assert!(false, "{other:?}"),
        }
        let text = text_of(|out| eio::encode_disconnect(&nsp, out));
        let disconnect = matches!(sio_of(&text), SioPacket::Disconnect { nsp: got } if got == nsp);
        prop_assert!(disconnect, "{}", text);
    }

    #[test]
    fn v4_pongs_echo_the_ping(data in any::<String>()) {
        let text = text_of(|out| eio::encode_pong(&data, out));
        prop_assert_eq!(decode_eio(&text).expect("a pong"), EioPacket::Pong(&data));
    }

    #[test]
    fn v4_decoders_never_panic(text in any::<String>()) {
        if let Ok(EioPacket::Message(sio)) = decode_eio(&text) {
            let _ = decode_sio(sio);
        }
        let _ = decode_sio(&text);
    }
}

// ---- socket.io 0.9 ----

proptest! {
    #![proptest_config(config())]

    #[test]
    fn legacy_events_round_trip(
        name in any::<String>().prop_filter("reserved", |n| n != "disconnect"),
        data in json_value(),
    ) {
        let text = text_of(|out| {
            legacy::encode_event_value(&name, &data, out).expect("encodable")
        });
        let raw = text_of(|out| legacy::encode_event(&name, data.to_string().as_bytes(), out));
        prop_assert_eq!(&text, &raw);
        match legacy::decode(&text).expect("a 0.9 packet") {
            Packet::Event { ack, endpoint, name: got, args } => {
                prop_assert_eq!(ack, AckRequest::None);
                prop_assert_eq!(endpoint, "");
                prop_assert_eq!(got.as_ref(), name.as_str());
                prop_assert_eq!(args.into_iter().map(parsed).collect::<Vec<_>>(), vec![data]);
            }
            other => prop_assert!(false, "{other:?}"),
        }
    }

    #[test]
    fn legacy_acks_round_trip(
        id in any::<u64>(),
        args in prop::option::of(prop::collection::vec(json_value(), 0..4)),
    ) {
        let json = args.as_ref().map(|a| Value::Array(a.clone()).to_string());
        let text = text_of(|out| legacy::encode_ack(id, json.as_deref().map(str::as_bytes), out));
        match legacy::decode(&text).expect("a 0.9 packet") {
            Packet::Ack { endpoint, id: got, args: got_args } => {
                prop_assert_eq!(endpoint, "");
                prop_assert_eq!(got, id);
                prop_assert_eq!(got_args.map(|a| a.into_iter().map(parsed).collect()), args);
            }
            other => prop_assert!(false, "{other:?}"),
        }
    }

    #[test]
    fn legacy_control_packets_round_trip(endpoint in "[^:]{0,16}") {
        let text = text_of(|out| legacy::encode_connect(&endpoint, out));
        let connect = matches!(
            legacy::decode(&text),
            Ok(Packet::Connect { endpoint: e, query: "" }) if e == endpoint
        );
        prop_assert!(connect, "{}", text);
        let text = text_of(|out| legacy::encode_disconnect(&endpoint, out));
        let disconnect = matches!(
            legacy::decode(&text),
            Ok(Packet::Disconnect { endpoint: e }) if e == endpoint
        );
        prop_assert!(disconnect, "{}", text);
        let text = text_of(|out| {
            legacy::encode_error(
                &endpoint,
                legacy::ErrorReason::ClientNotHandshaken,
                Some(legacy::ErrorAdvice::Reconnect),
                out,
            )
        });
        let error = matches!(
            legacy::decode(&text),
            Ok(Packet::Error { endpoint: e, reason: "1", advice: "0" }) if e == endpoint
        );
        prop_assert!(error, "{}", text);
        prop_assert!(matches!(legacy::decode(&text_of(legacy::encode_heartbeat)), Ok(Packet::Heartbeat)));
        prop_assert!(matches!(legacy::decode(&text_of(legacy::encode_noop)), Ok(Packet::Noop)));
    }

    #[test]
    fn legacy_sids_verify_only_with_their_secret_and_age(
        secret in prop::collection::vec(any::<u8>(), 0..80),
        other in prop::collection::vec(any::<u8>(), 0..80),
        issued in 0u64..(u64::MAX / 2),
        age in 0u64..200_000,
    ) {
        let sid = legacy::new_sid(&secret, issued);
        prop_assert_eq!(sid.len(), legacy::SID_LEN);
        let max_age = 60_000;
        let result = legacy::verify_sid(&sid, &secret, issued + age, max_age);
        if age > max_age {
            prop_assert!(
                matches!(result, Err(legacy::SidError::Expired { .. })),
                "{:?}",
                result
            );
        } else {
            prop_assert_eq!(result, Ok(()));
        }
        // HMAC pads short keys with zeros, so such keys are the same key.
        let trimmed = |k: &[u8]| k.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
        if other[..trimmed(&other)] != secret[..trimmed(&secret)] {
            prop_assert_eq!(
                legacy::verify_sid(&sid, &other, issued, max_age),
                Err(legacy::SidError::Forged)
            );
        }
    }

    #[test]
    fn legacy_decoder_never_panics(text in any::<String>()) {
        let _ = legacy::decode(&text);
        let _ = legacy::verify_sid(&text, b"secret", 1_700_000_000_000, 60_000);
    }
}

// ---- websocket frames ----

/// A server frame (unmasked) made a client frame: the mask bit set, the mask after the length,
/// the payload masked with it.
fn masked(server: &[u8], mask: [u8; 4]) -> Vec<u8> {
    let header = match server[1] & 0x7f {
        126 => 4,
        127 => 10,
        _ => 2,
    };
    let mut client = server[..header].to_vec();
    client[1] |= 0x80;
    client.extend_from_slice(&mask);
    client.extend(
        server[header..]
            .iter()
            .zip(mask.iter().cycle())
            .map(|(b, m)| b ^ m),
    );
    client
}

/// A client frame with its own FIN bit and opcode (for fragments).
fn client_frame(fin: bool, opcode: u8, payload: &[u8], mask: [u8; 4]) -> Vec<u8> {
    let mut server = Vec::new();
    websocket::encode_binary(payload, &mut server);
    server[0] = if fin { 0x80 } else { 0 } | opcode;
    masked(&server, mask)
}

#[derive(Debug, Clone)]
enum Sent {
    Text(String),
    Binary(Vec<u8>),
    Ping(Vec<u8>),
    Pong(Vec<u8>),
    Close(u16, String),
    /// A text message in fragments of these lengths (the rest in the last one).
    Fragmented(String, Vec<usize>),
}

fn sent() -> impl Strategy<Value = Sent> {
    let close_code = prop_oneof![1000u16..=1003, 1007u16..=1014, 3000u16..=4999];
    prop_oneof![
        any::<String>().prop_map(Sent::Text),
        prop::collection::vec(any::<u8>(), 0..300).prop_map(Sent::Binary),
        prop::collection::vec(any::<u8>(), 0..=125).prop_map(Sent::Ping),
        prop::collection::vec(any::<u8>(), 0..=125).prop_map(Sent::Pong),
        (close_code, "[a-z ]{0,40}").prop_map(|(c, r)| Sent::Close(c, r)),
        (any::<String>(), prop::collection::vec(0usize..40, 0..4))
            .prop_map(|(t, cuts)| Sent::Fragmented(t, cuts)),
        // Big enough for the 16-bit length form.
        "[a-z]{126,400}".prop_map(Sent::Text),
    ]
}

impl Sent {
    fn frames(&self, mask: [u8; 4], out: &mut Vec<u8>) {
        let mut server = Vec::new();
        match self {
            Sent::Text(t) => websocket::encode_text(t.as_bytes(), &mut server),
            Sent::Binary(b) => websocket::encode_binary(b, &mut server),
            Sent::Ping(p) => websocket::encode_ping(p, &mut server),
            Sent::Pong(p) => websocket::encode_pong(p, &mut server),
            Sent::Close(code, reason) => websocket::encode_close(*code, reason, &mut server),
            Sent::Fragmented(text, lens) => {
                let bytes = text.as_bytes();
                let mut at = 0;
                let mut opcode = 0x1;
                for len in lens {
                    let end = (at + len).min(bytes.len());
                    out.extend(client_frame(false, opcode, &bytes[at..end], mask));
                    opcode = 0x0;
                    at = end;
                }
                out.extend(client_frame(true, opcode, &bytes[at..], mask));
                return;
            }
        }
        out.extend(masked(&server, mask));
    }

    fn message(&self) -> Message {
        match self {
            Sent::Text(t) | Sent::Fragmented(t, _) => Message::Text(t.clone()),
            Sent::Binary(b) => Message::Binary(b.clone()),
            Sent::Ping(p) => Message::Ping(p.clone()),
            Sent::Pong(p) => Message::Pong(p.clone()),
            Sent::Close(code, reason) => Message::Close(Some((*code, reason.clone()))),
        }
    }
}

fn feed_all(pieces: &[&[u8]]) -> Result<Vec<Message>, websocket::WsError> {
    let mut decoder = Decoder::new(1 << 20);
    let mut out = Vec::new();
    for piece in pieces {
        decoder.feed(piece, &mut out)?;
    }
    assert!(decoder.is_idle(), "the stream ended on a message boundary");
    Ok(out)
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn websocket_frames_round_trip_cut_anywhere(
        sent in prop::collection::vec(sent(), 1..6),
        mask in any::<[u8; 4]>(),
        cuts in prop::collection::vec(any::<usize>(), 0..12),
    ) {
        let mut stream = Vec::new();
        for s in &sent {
            s.frames(mask, &mut stream);
        }
        let want: Vec<Message> = sent.iter().map(Sent::message).collect();
        prop_assert_eq!(&feed_all(&[&stream]).expect("valid frames"), &want);
        prop_assert_eq!(&feed_all(&cut(&stream, &cuts)).expect("valid frames"), &want);
    }

    #[test]
    fn websocket_decoder_gives_the_same_for_any_cut(
        stream in prop::collection::vec(any::<u8>(), 0..200),
        cuts in prop::collection::vec(any::<usize>(), 0..8),
        max in 0usize..300,
    ) {
        let run = |pieces: &[&[u8]]| {
            let mut decoder = Decoder::new(max);
            let mut out = Vec::new();
            for piece in pieces {
                if let Err(e) = decoder.feed(piece, &mut out) {
                    return (out, Some(e));
                }
            }
            (out, None)
        };
        prop_assert_eq!(run(&[&stream]), run(&cut(&stream, &cuts)));
    }
}

// ---- master <-> worker frames ----

fn to_worker() -> impl Strategy<Value = ToWorker> {
    prop_oneof![
        any::<u64>().prop_map(|seq| ToWorker::Heartbeat { seq }),
        any::<u64>().prop_map(|timeout_ms| ToWorker::Drain { timeout_ms }),
        any::<usize>().prop_map(|slot| ToWorker::Activate { slot }),
        any::<u64>().prop_map(|ms| ToWorker::ResendInterval { ms }),
        (
            any::<u64>(),
            prop::option::of(any::<String>()),
            json_object()
        )
            .prop_map(|(id, user, data)| ToWorker::Push {
                id,
                audience: user.map_or(Audience::All, Audience::User),
                data,
            }),
        any::<u64>().prop_map(|generation| ToWorker::Init {
            generation,
            config: Box::new(Config::defaults()),
            tls: None,
        }),
    ]
}

fn to_master() -> impl Strategy<Value = ToMaster> {
    prop_oneof![
        Just(ToMaster::Ready),
        (any::<u64>(), any::<[u64; 5]>()).prop_map(|(seq, r)| ToMaster::HeartbeatAck {
            seq,
            report: Box::new(WorkerReport {
                rss: r[0],
                heap_used: r[1],
                heap_total: r[2],
                clients: r[3],
                loop_lag_us: r[4],
                metrics: Default::default(),
            }),
        }),
        any::<u64>().prop_map(|clients| ToMaster::Draining { clients }),
        (any::<u64>(), prop::option::of(any::<String>()))
            .prop_map(|(id, error)| ToMaster::Pushed { id, error }),
    ]
}

/// The messages of a stream fed to a receiver's buffer in the given pieces.
fn receive<M: serde::de::DeserializeOwned>(pieces: &[&[u8]]) -> Vec<M> {
    let mut buf = Vec::new();
    let mut got = Vec::new();
    for piece in pieces {
        buf.extend_from_slice(piece);
        while let Decoded::Message { msg, used } = ipc::decode::<M>(&buf) {
            got.push(msg.expect("a valid frame"));
            buf.drain(..used);
        }
    }
    assert!(buf.is_empty(), "{} bytes left over", buf.len());
    got
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn ipc_frames_round_trip_cut_anywhere(
        down in prop::collection::vec(to_worker(), 1..5),
        up in prop::collection::vec(to_master(), 1..5),
        cuts in prop::collection::vec(any::<usize>(), 0..10),
    ) {
        let stream = |frames: Vec<ipc::Frame>| -> Vec<u8> {
            frames.iter().flat_map(|f| f.as_bytes().to_vec()).collect()
        };
        let bytes = stream(down.iter().map(|m| ipc::encode(m).expect("fits")).collect());
        prop_assert_eq!(&receive::<ToWorker>(&[&bytes]), &down);
        prop_assert_eq!(&receive::<ToWorker>(&cut(&bytes, &cuts)), &down);
        let bytes = stream(up.iter().map(|m| ipc::encode(m).expect("fits")).collect());
        prop_assert_eq!(&receive::<ToMaster>(&cut(&bytes, &cuts)), &up);
    }

    #[test]
    fn ipc_decoder_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..64)) {
        let _ = ipc::decode::<ToWorker>(&bytes);
        let _ = ipc::decode::<ToMaster>(&bytes);
    }
}

// ---- reconnect keys ----

fn id() -> impl Strategy<Value = String> {
    any::<String>().prop_filter("empty ids are read as none", |s| !s.is_empty())
}

fn session() -> impl Strategy<Value = Session> {
    (
        id(),
        prop::option::of(id()),
        prop::collection::vec(id(), 0..4),
        prop::option::of(id()),
        prop::option::of(id()),
        prop::option::of(id()),
    )
        .prop_map(
            |(client_id, existing_client_id, existing_client_ids, device_id, token, user_id)| {
                Session {
                    client_id,
                    existing_client_id,
                    existing_client_ids,
                    device_id,
                    token,
                    user_id,
                }
            },
        )
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn reconnect_keys_round_trip(
        session in session(),
        secret in prop::collection::vec(any::<u8>(), 0..100),
        saved_at in 0u64..(u64::MAX / 2),
    ) {
        let key = session.sign_at(&secret, saved_at);
        prop_assert_eq!(Session::verify_at(&key, &secret, saved_at), Ok(session.clone()));
        // (HMAC pads short keys with zeros: another secret must differ by more than those.)
        let mut other = secret.clone();
        other.push(1);
        prop_assert!(Session::verify_at(&key, &other, saved_at).is_err());
        // A changed data part no longer matches its signature.
        let (data, signature) = key.split_once(';').expect("data;signature");
        let tampered = format!("{}A;{signature}", data);
        prop_assert!(Session::verify_at(&tampered, &secret, saved_at).is_err());
    }

    #[test]
    fn reconnect_key_verification_never_panics(key in any::<String>()) {
        prop_assert!(Session::verify_at(&key, b"secret", 1_700_000_000_000).is_err());
    }
}

// ---- Centrifugo commands ----

#[derive(Debug, Clone)]
enum Sub {
    Subscribe {
        id: u32,
        channel: String,
        recover: bool,
        offset: u64,
        epoch: String,
    },
    Publish {
        id: u32,
        channel: String,
        data: Value,
    },
    History {
        id: u32,
        channel: String,
        limit: i32,
        since: Option<(u64, String)>,
        reverse: bool,
    },
    Connect {
        id: u32,
        token: String,
        name: String,
    },
    Unsubscribe {
        id: u32,
        channel: String,
    },
    Pong,
}

fn centrifugo_command() -> impl Strategy<Value = Sub> {
    let id = 1u32..;
    prop_oneof![
        (
            id.clone(),
            any::<String>(),
            any::<bool>(),
            any::<u64>(),
            any::<String>()
        )
            .prop_map(|(id, channel, recover, offset, epoch)| Sub::Subscribe {
                id,
                channel,
                recover,
                offset,
                epoch,
            }),
        (id.clone(), any::<String>(), json_value()).prop_map(|(id, channel, data)| Sub::Publish {
            id,
            channel,
            data
        }),
        (
            id.clone(),
            any::<String>(),
            any::<i32>(),
            prop::option::of((any::<u64>(), any::<String>())),
            any::<bool>(),
        )
            .prop_map(|(id, channel, limit, since, reverse)| Sub::History {
                id,
                channel,
                limit,
                since,
                reverse,
            }),
        (id.clone(), any::<String>(), any::<String>()).prop_map(|(id, token, name)| Sub::Connect {
            id,
            token,
            name
        }),
        (id, any::<String>()).prop_map(|(id, channel)| Sub::Unsubscribe { id, channel }),
        Just(Sub::Pong),
    ]
}

impl Sub {
    fn json(&self) -> Value {
        match self {
            Sub::Subscribe {
                id,
                channel,
                recover,
                offset,
                epoch,
            } => json!({"id": id, "subscribe": {
                "channel": channel, "recover": recover, "offset": offset, "epoch": epoch}}),
            Sub::Publish { id, channel, data } => {
                json!({"id": id, "publish": {"channel": channel, "data": data}})
            }
            Sub::History {
                id,
                channel,
                limit,
                since,
                reverse,
            } => {
                let mut history = json!({"channel": channel, "limit": limit, "reverse": reverse});
                if let Some((offset, epoch)) = since {
                    history["since"] = json!({"offset": offset, "epoch": epoch});
                }
                json!({"id": id, "history": history})
            }
            Sub::Connect { id, token, name } => {
                json!({"id": id, "connect": {"token": token, "name": name}})
            }
            Sub::Unsubscribe { id, channel } => {
                json!({"id": id, "unsubscribe": {"channel": channel}})
            }
            Sub::Pong => json!({}),
        }
    }

    fn check(&self, command: &Command) -> Result<(), TestCaseError> {
        match (self, command) {
            (Sub::Pong, Command::Pong) => {}
            (
                Sub::Subscribe {
                    id,
                    channel,
                    recover,
                    offset,
                    epoch,
                },
                Command::Call {
                    id: got,
                    method: Method::Subscribe(r),
                },
            ) => {
                prop_assert_eq!(got, id);
                prop_assert_eq!(&r.channel, channel);
                prop_assert_eq!((r.recover, r.offset), (*recover, *offset));
                prop_assert_eq!(&r.epoch, epoch);
            }
            (
                Sub::Publish { id, channel, data },
                Command::Call {
                    id: got,
                    method: Method::Publish(r),
                },
            ) => {
                prop_assert_eq!(got, id);
                prop_assert_eq!(&r.channel, channel);
                let got_data = r.data.as_ref().map(|d| parsed(d));
                // `"data": null` reads as no data.
                prop_assert_eq!(got_data, (!data.is_null()).then(|| data.clone()));
            }
            (
                Sub::History {
                    id,
                    channel,
                    limit,
                    since,
                    reverse,
                },
                Command::Call {
                    id: got,
                    method: Method::History(r),
                },
            ) => {
                prop_assert_eq!(got, id);
                prop_assert_eq!(&r.channel, channel);
                prop_assert_eq!((r.limit, r.reverse), (*limit, *reverse));
                let got_since = r.since.as_ref().map(|p| (p.offset, p.epoch.clone()));
                prop_assert_eq!(&got_since, since);
            }
            (
                Sub::Connect { id, token, name },
                Command::Call {
                    id: got,
                    method: Method::Connect(r),
                },
            ) => {
                prop_assert_eq!(got, id);
                prop_assert_eq!((&r.token, &r.name), (token, name));
            }
            (
                Sub::Unsubscribe { id, channel },
                Command::Call {
                    id: got,
                    method: Method::Unsubscribe(r),
                },
            ) => {
                prop_assert_eq!(got, id);
                prop_assert_eq!(&r.channel, channel);
            }
            (sent, got) => prop_assert!(false, "sent {sent:?}, read {got:?}"),
        }
        Ok(())
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn centrifugo_commands_round_trip_in_one_frame(
        commands in prop::collection::vec(centrifugo_command(), 1..6),
        trailing_newline in any::<bool>(),
    ) {
        let mut frame = commands
            .iter()
            .map(|c| c.json().to_string())
            .collect::<Vec<_>>()
            .join("\n");
        if trailing_newline {
            frame.push('\n');
        }
        let lines: Vec<&str> = split_frame(&frame).collect();
        prop_assert_eq!(lines.len(), commands.len());
        for (sent, line) in commands.iter().zip(lines) {
            let command = Command::parse(line).expect("a valid command");
            sent.check(&command)?;
        }
    }

    #[test]
    fn centrifugo_parser_never_panics(frame in any::<String>()) {
        for line in split_frame(&frame) {
            let _ = Command::parse(line);
        }
    }
}

// ---- gateway.properties ----

/// Values for some keys of every kind (numbers, durations, flags, lists, names, secrets, free
/// text), valid and not.
fn property() -> impl Strategy<Value = (&'static str, String)> {
    let keys = prop::sample::select(vec![
        "cluster.heartbeatInterval",
        "cluster.workerTimeout",
        "cluster.workerCount",
        "cluster.memoryLimit.rss",
        "cluster.controlSocket",
        "frontend.host",
        "frontend.port",
        "frontend.shutdownCode",
        "frontend.session_secret",
        "frontend.logLevel",
        "frontend.ssl",
        "gateway.rabbitmq.host",
        "gateway.rabbitmq.password",
        "gateway.rabbitmq.vhost",
        "gateway.redis.password",
        "gateway.socketio.interval",
        "gateway.socketio.timeout",
        "relay.enabled",
        "relay.subjectPrefix",
        "realtime.enabled",
        "realtime.allowedOrigins",
        "realtime.nats.subjects",
        "realtime.namespace.personal.historySize",
        "realtime.namespace.chat.historyTtl",
        "realtime.namespace.chat.presence",
        "realtime.namespace.a-b.c.forceRecovery",
    ]);
    let value = prop_oneof![
        (0u64..100_000).prop_map(|n| n.to_string()),
        prop::sample::select(vec![
            "true", "no", "1", "info", "debug", "events.>", "a, b,,c"
        ])
        .prop_map(str::to_string),
        any::<String>(),
        "[ -~]{0,24}",
    ];
    (keys, value)
}

fn text_of_properties(props: &[(&str, String)]) -> String {
    props.iter().map(|(k, v)| format!("{k}={v}\n")).collect()
}

fn same_config(a: &Config, b: &Config) {
    let keys = |c: &Config| {
        c.entries()
            .into_iter()
            .map(|e| (e.key, e.value, matches!(e.origin, Origin::File { .. })))
            .collect::<Vec<_>>()
    };
    assert_eq!(keys(a), keys(b));
    let (mut a, mut b) = (a.clone(), b.clone());
    a.origins = Origins::default();
    b.origins = Origins::default();
    assert_eq!(a, b);
}

const ORIGIN: &str = "/nonexistent/gateway.properties";

proptest! {
    #![proptest_config(config())]

    #[test]
    fn properties_parsing_never_panics(text in any::<String>()) {
        if let Ok(loaded) = Config::parse(&text, Path::new(ORIGIN)) {
            let _ = loaded.config.check_worker_init(None);
        }
    }

    #[test]
    fn written_back_configs_parse_to_the_same_config(
        props in prop::collection::vec(property(), 1..12),
    ) {
        let text = text_of_properties(&props);
        let Ok(loaded) = Config::parse(&text, Path::new(ORIGIN)) else {
            return Ok(());
        };
        let written = loaded.config.to_properties();
        let again = Config::parse(&written, Path::new(ORIGIN))
            .unwrap_or_else(|e| panic!("{e}\nwritten back as:\n{written}"));
        same_config(&loaded.config, &again.config);
        prop_assert_eq!(loaded.config.check_reload(&again.config), Ok(()));
    }
}

// ---- console commands ----

proptest! {
    #![proptest_config(config())]

    #[test]
    fn console_parser_never_panics(line in any::<String>()) {
        let _ = ConsoleCommand::parse(&line).map(|c| c.redacted());
    }

    #[test]
    fn console_pushes_round_trip(
        user in prop::option::of("[^\\s*][^\\s]{0,12}"),
        data in json_object(),
    ) {
        let target = user.clone().unwrap_or_else(|| "*".to_string());
        let line = format!("push {target} {data}");
        match ConsoleCommand::parse(&line).expect("a push") {
            ConsoleCommand::Push { audience, data: got } => {
                prop_assert_eq!(audience, user.map_or(Audience::All, Audience::User));
                prop_assert_eq!(got, data);
            }
            other => prop_assert!(false, "{other:?}"),
        }
    }
}

// ---- what the fuzzers found ----

/// Found by `fuzz/` `socketio_v4` and `socketio_legacy` on their first runs: an argument with a
/// number beyond f64 (`1e999`) is valid JSON, so the decoders take it as raw JSON, but serde_json
/// makes no value of it. The framings refuse such a message with a protocol error (the
/// connection closes with 1002), never a panic; no client library writes such numbers (their
/// JSON encoders write `null` or refuse infinities).
#[test]
fn a_number_beyond_f64_in_an_event_is_a_protocol_error() {
    use activestack_gateway::gateway::framing::Framing;
    use activestack_gateway::gateway::framing::engineio::EngineIo;
    use activestack_gateway::gateway::framing::legacy::Legacy;
    use std::time::Duration;
    use tokio::time::Instant;

    const HUGE: &str = "52.6e666666666";
    let now = Instant::now();
    let mut out = Vec::new();

    let v4_event = format!("2[\"testCall\",{{\"b\":[{HUGE}]}}]");
    assert!(matches!(
        decode_sio(&v4_event),
        Ok(SioPacket::Event { args, .. }) if args.len() == 1
    ));
    let mut v4 = EngineIo::new(
        EioVersion::V4,
        "sid".to_string(),
        Duration::from_secs(25),
        Duration::from_secs(20),
    );
    v4.open(now, &mut out).expect("open");
    v4.receive("40", now, &mut out).expect("connect");
    let e = v4
        .receive(&format!("4{v4_event}"), now, &mut out)
        .expect_err("refused");
    assert!(e.to_string().contains("number out of range"), "{e}");

    let legacy_json = format!("4:1+::{{\"b\":{HUGE}}}");
    assert!(matches!(
        legacy::decode(&legacy_json),
        Ok(Packet::Json { .. })
    ));
    let mut legacy_framing = Legacy::new(Duration::from_secs(25), Duration::from_secs(60), false);
    legacy_framing.open(now, &mut out).expect("open");
    let e = legacy_framing
        .receive(&legacy_json, now, &mut out)
        .expect_err("refused");
    assert!(e.to_string().contains("number out of range"), "{e}");
}
