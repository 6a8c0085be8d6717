//! The node's DNS responder: every route's upstreams as SRV records, which Caddy's dynamic
//! upstreams read, so moving traffic is an answer that changes, not a Caddy config reload.
//!
//! Caddy 2.6 restarts its servers on every config change, closing idle kept-alive client
//! connections (a client reusing one at that instant fails). Each route in Caddy therefore
//! names only `_app._tcp.<domain>.berth.internal` and this responder, and never changes while
//! the domain exists; the upstreams live in [`Table`], which the `Router` keeps equal to the
//! desired route table in Redis. Caddy re-reads the answer every 100 ms (`REFRESH`).
//!
//! Targets are names that carry their address (`ip-10-0-0-2.berth.internal` → A 10.0.0.2; AAAA:
//! no data), so an A answer never depends on state that could change under Caddy between its
//! SRV lookup and its dial. It answers over UDP and TCP (Caddy dials the resolver over TCP). It
//! runs on a thread and runtime of its own, never the actix `System`: a responder that stalls
//! would stall every route of this node's Caddy (Caddy 2.6 looks up under one global lock).

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::{Arc, RwLock};

use hickory_proto::op::{Message, MessageType, ResponseCode};
use hickory_proto::rr::rdata::{A, SRV};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

use crate::error::{Error, Result};

/// The zone this responder answers for.
pub const ZONE: &str = "berth.internal";
/// How often Caddy re-reads a route's upstreams.
pub const REFRESH: &str = "100ms";

/// Domain → upstreams (advertised address and published port): what the responder serves.
pub type Table = Arc<RwLock<HashMap<String, Vec<SocketAddrV4>>>>;

/// The SRV name Caddy looks up for a domain's upstreams (`service` `app`, `proto` `tcp`).
pub fn srv_name(domain: &str) -> String {
    format!("{domain}.{ZONE}")
}

/// An upstream's `host:port` dial, as routes store it, in the form the responder serves.
pub fn upstream_addr(dial: &str) -> Option<SocketAddrV4> {
    dial.parse().ok()
}

fn target(ip: &Ipv4Addr) -> String {
    let o = ip.octets();
    format!("ip-{}-{}-{}-{}.{ZONE}.", o[0], o[1], o[2], o[3])
}

/// The address a target name carries.
fn target_ip(name: &str) -> Option<Ipv4Addr> {
    let label = name
        .strip_suffix(&format!(".{ZONE}"))?
        .strip_prefix("ip-")?;
    let parts: Vec<u8> = label
        .split('-')
        .map(|p| p.parse().ok())
        .collect::<Option<_>>()?;
    match parts[..] {
        [a, b, c, d] => Some(Ipv4Addr::new(a, b, c, d)),
        _ => None,
    }
}

/// The answer to one DNS query message, or `None` for bytes that are not a query.
pub fn answer(table: &Table, query: &[u8]) -> Option<Vec<u8>> {
    let q = Message::from_vec(query).ok()?;
    if q.message_type() != MessageType::Query {
        return None;
    }
    let mut r = Message::new();
    r.set_id(q.id())
        .set_message_type(MessageType::Response)
        .set_op_code(q.op_code())
        .set_authoritative(true)
        .set_recursion_desired(q.recursion_desired());
    let mut code = ResponseCode::NoError;
    for query in q.queries() {
        r.add_query(query.clone());
        let qname = query.name().to_lowercase();
        let text = qname.to_ascii();
        let text = text.trim_end_matches('.');
        match query.query_type() {
            RecordType::SRV => {
                let domain = text
                    .strip_prefix("_app._tcp.")
                    .and_then(|n| n.strip_suffix(&format!(".{ZONE}")));
                let ups = domain.and_then(|d| {
                    let t = table.read().unwrap_or_else(|p| p.into_inner());
                    t.get(d).filter(|u| !u.is_empty()).cloned()
                });
                match ups {
                    Some(ups) => {
                        for u in ups {
                            let target = Name::from_ascii(target(u.ip())).ok()?;
                            let srv = SRV::new(0, 1, u.port(), target);
                            r.add_answer(Record::from_rdata(qname.clone(), 0, RData::SRV(srv)));
                        }
                    }
                    None => code = ResponseCode::NXDomain,
                }
            }
            RecordType::A => match target_ip(text) {
                Some(ip) => {
                    r.add_answer(Record::from_rdata(qname.clone(), 3600, RData::A(A(ip))));
                }
                None => code = ResponseCode::NXDomain,
            },
            // The name exists (Go asks for AAAA beside A), with no IPv6 address.
            _ if target_ip(text).is_some() => {}
            _ => code = ResponseCode::NXDomain,
        }
    }
    r.set_response_code(code);
    r.to_vec().ok()
}

/// Binds UDP and TCP on `listen` (the same port for both; port 0 picks one) and serves the
/// table on a thread of its own until `stop` is cancelled. Returns the bound address.
pub fn start(listen: SocketAddr, table: Table, stop: CancellationToken) -> Result<SocketAddr> {
    let bind = |e: std::io::Error| Error::Config(format!("DNS responder on {listen}: {e}"));
    let tcp = std::net::TcpListener::bind(listen).map_err(bind)?;
    let addr = tcp.local_addr().map_err(bind)?;
    let udp = std::net::UdpSocket::bind(addr).map_err(bind)?;
    tcp.set_nonblocking(true).map_err(bind)?;
    udp.set_nonblocking(true).map_err(bind)?;
    std::thread::Builder::new()
        .name("berth-dns".into())
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    tracing::error!(error = %e, "DNS responder: no runtime");
                    return;
                }
            };
            rt.block_on(async move {
                let (Ok(tcp), Ok(udp)) = (
                    tokio::net::TcpListener::from_std(tcp),
                    tokio::net::UdpSocket::from_std(udp),
                ) else {
                    tracing::error!("DNS responder: cannot register its sockets");
                    return;
                };
                tokio::select! {
                    _ = serve_udp(udp, table.clone()) => {}
                    _ = serve_tcp(tcp, table) => {}
                    _ = stop.cancelled() => {}
                }
            });
        })
        .map_err(|e| Error::Config(format!("DNS responder thread: {e}")))?;
    tracing::info!(%addr, "DNS responder for Caddy's upstreams listening");
    Ok(addr)
}

async fn serve_udp(sock: tokio::net::UdpSocket, table: Table) {
    let mut buf = vec![0u8; 4096];
    loop {
        let (n, peer) = match sock.recv_from(&mut buf).await {
            Ok(x) => x,
            Err(e) => {
                tracing::debug!(error = %e, "DNS responder: UDP receive failed");
                continue;
            }
        };
        if let Some(resp) = answer(&table, &buf[..n]) {
            let _ = sock.send_to(&resp, peer).await;
        }
    }
}

async fn serve_tcp(listener: tokio::net::TcpListener, table: Table) {
    loop {
        let Ok((mut conn, _)) = listener.accept().await else {
            continue;
        };
        let table = table.clone();
        // Ends with its connection, or with the runtime at shutdown.
        tokio::spawn(async move {
            // DNS over TCP: each message behind a two-byte length.
            loop {
                let Ok(len) = conn.read_u16().await else {
                    return;
                };
                let mut msg = vec![0u8; len as usize];
                if conn.read_exact(&mut msg).await.is_err() {
                    return;
                }
                let Some(resp) = answer(&table, &msg) else {
                    return;
                };
                let mut out = Vec::with_capacity(resp.len() + 2);
                out.extend_from_slice(&(resp.len() as u16).to_be_bytes());
                out.extend_from_slice(&resp);
                if conn.write_all(&out).await.is_err() {
                    return;
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::op::Query;

    fn ask(table: &Table, name: &str, t: RecordType) -> Message {
        let mut q = Message::new();
        q.set_id(7)
            .set_message_type(MessageType::Query)
            .add_query(Query::query(Name::from_ascii(name).unwrap(), t));
        Message::from_vec(&answer(table, &q.to_vec().unwrap()).unwrap()).unwrap()
    }

    #[test]
    fn srv_a_and_aaaa_answers() {
        let table: Table = Arc::default();
        table.write().unwrap().insert(
            "hello.localhost".into(),
            vec![
                "127.0.0.1:32768".parse().unwrap(),
                "10.1.2.3:80".parse().unwrap(),
            ],
        );
        let r = ask(
            &table,
            "_app._tcp.hello.localhost.berth.internal.",
            RecordType::SRV,
        );
        assert_eq!(r.id(), 7);
        assert_eq!(r.response_code(), ResponseCode::NoError);
        let srv: Vec<(u16, String)> = r
            .answers()
            .iter()
            .map(|a| match a.data() {
                RData::SRV(s) => (s.port(), s.target().to_ascii()),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(
            srv,
            [
                (32768, "ip-127-0-0-1.berth.internal.".to_string()),
                (80, "ip-10-1-2-3.berth.internal.".to_string())
            ]
        );
        let a = ask(&table, "ip-10-1-2-3.berth.internal.", RecordType::A);
        assert!(
            matches!(a.answers()[0].data(), RData::A(A(ip)) if *ip == Ipv4Addr::new(10, 1, 2, 3))
        );
        let aaaa = ask(&table, "ip-10-1-2-3.berth.internal.", RecordType::AAAA);
        assert_eq!(aaaa.response_code(), ResponseCode::NoError);
        assert!(aaaa.answers().is_empty());
        for (name, t) in [
            ("_app._tcp.other.localhost.berth.internal.", RecordType::SRV),
            ("ip-10-1-2.berth.internal.", RecordType::A),
            ("ip-300-1-2-3.berth.internal.", RecordType::A),
            ("example.com.", RecordType::A),
        ] {
            assert_eq!(
                ask(&table, name, t).response_code(),
                ResponseCode::NXDomain,
                "{name}"
            );
        }
        // A domain whose route has no upstream left is not there either.
        table
            .write()
            .unwrap()
            .insert("empty.localhost".into(), vec![]);
        let r = ask(
            &table,
            "_app._tcp.empty.localhost.berth.internal.",
            RecordType::SRV,
        );
        assert_eq!(r.response_code(), ResponseCode::NXDomain);
    }
}
