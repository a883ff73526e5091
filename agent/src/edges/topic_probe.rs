//! Asks the broker itself for the ids of a fault's topics before any rule is installed.
//! Kafka 4 clients name topics by id in Produce v13+ and Fetch v13+, and a client sends its
//! first Produce a fraction of a millisecond after the Metadata response that taught it the
//! id: learning ids only by sniffing would let that first request through. So `inject` sends
//! one Metadata request of its own, from inside the broker's namespace, to the broker's own
//! listener on loopback, and decodes the answer with the sniffer's decoder.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{ApiKey, MetadataRequest, RequestHeader, TopicName};
use kafka_protocol::protocol::{Encodable, StrBytes};
use kafka_shock_agent::decode::decode_response;

use crate::edges::netns::Netns;

/// Metadata v12: supported by every Kafka 3.x and 4.x broker, and it returns topic ids.
const METADATA_VERSION: i16 = 12;
/// The flexible request header that Metadata v12 uses.
const REQUEST_HEADER_VERSION: i16 = 2;
const TIMEOUT: Duration = Duration::from_secs(3);
/// A Metadata response for a few topics is small; refuse anything absurd.
const MAX_RESPONSE: usize = 16 << 20;

/// Why the broker could not be asked; `inject` then relies on sniffing alone.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error(transparent)]
    Netns(#[from] crate::edges::netns::NetnsError),
    #[error("asking the broker on port {port}: {source}")]
    Io { port: u16, source: std::io::Error },
    #[error("encoding the Metadata request: {0}")]
    Encode(String),
    #[error("the broker's Metadata response is {0} bytes, more than a probe accepts")]
    TooLarge(usize),
    #[error("the broker's Metadata response could not be decoded: {0}")]
    Decode(String),
    #[error("the probe thread failed")]
    Thread,
}

fn request(topics: &[String]) -> Result<Vec<u8>, ProbeError> {
    let header = RequestHeader::default()
        .with_request_api_key(ApiKey::Metadata as i16)
        .with_request_api_version(METADATA_VERSION)
        .with_correlation_id(1)
        .with_client_id(Some(StrBytes::from_static_str("kafka-shock-probe")));
    let body = MetadataRequest::default()
        .with_topics(Some(
            topics
                .iter()
                .map(|name| {
                    MetadataRequestTopic::default()
                        .with_name(Some(TopicName(StrBytes::from_string(name.clone()))))
                })
                .collect(),
        ))
        .with_allow_auto_topic_creation(false);
    let mut frame = BytesMut::new();
    header
        .encode(&mut frame, REQUEST_HEADER_VERSION)
        .and_then(|()| body.encode(&mut frame, METADATA_VERSION))
        .map_err(|error| ProbeError::Encode(error.to_string()))?;
    let mut message = u32::try_from(frame.len())
        .map_err(|_| ProbeError::TooLarge(frame.len()))?
        .to_be_bytes()
        .to_vec();
    message.extend_from_slice(&frame);
    Ok(message)
}

fn ask(port: u16, message: &[u8]) -> Result<Bytes, ProbeError> {
    let io = |source| ProbeError::Io { port, source };
    let mut stream =
        TcpStream::connect_timeout(&SocketAddr::from((Ipv4Addr::LOCALHOST, port)), TIMEOUT)
            .map_err(io)?;
    stream.set_read_timeout(Some(TIMEOUT)).map_err(io)?;
    stream.write_all(message).map_err(io)?;
    let mut size = [0u8; 4];
    stream.read_exact(&mut size).map_err(io)?;
    let size = u32::from_be_bytes(size) as usize;
    if size > MAX_RESPONSE {
        return Err(ProbeError::TooLarge(size));
    }
    let mut frame = vec![0u8; size];
    stream.read_exact(&mut frame).map_err(io)?;
    Ok(Bytes::from(frame))
}

/// The ids the broker listening on `port` in the namespace `netns` gives `topics` (topics it
/// does not know are left out). The socket is made on a thread of its own, in the namespace.
pub fn topic_ids(
    netns: &Arc<Netns>,
    port: u16,
    topics: &[String],
) -> Result<Vec<[u8; 16]>, ProbeError> {
    let message = request(topics)?;
    let netns = netns.clone();
    let frame = std::thread::spawn(move || -> Result<Bytes, ProbeError> {
        netns.enter_current_thread()?;
        ask(port, &message)
    })
    .join()
    .map_err(|_| ProbeError::Thread)??;
    let info = decode_response(
        &frame,
        ApiKey::Metadata as i16,
        METADATA_VERSION,
        frame.len(),
    );
    if let Some(error) = info.error {
        return Err(ProbeError::Decode(error.to_string()));
    }
    Ok(info
        .topic_ids
        .into_iter()
        .filter(|(_, name)| topics.contains(name))
        .map(|(id, _)| *id.as_bytes())
        .collect())
}
