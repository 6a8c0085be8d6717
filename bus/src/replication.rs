//! Where Redis stands in its replication: the role of the Redis a daemon writes to and the
//! replicas connected to it, read from `INFO replication` (for `GET /api/v1/redis`, `berth nodes`
//! and `/metrics`).

use berth_protocol::api::{RedisReplica, RedisView};
use redis::RedisResult;

use crate::Redis;

/// What `redis`'s `INFO replication` says now.
pub async fn replication(redis: &Redis) -> RedisResult<RedisView> {
    let mut c = redis.clone();
    let text: String = redis::cmd("INFO")
        .arg("replication")
        .query_async(&mut c)
        .await?;
    // Under Sentinel the link's address also names the primary's group: the address alone here.
    let addr = redis.addr();
    let addr = addr.split(" (").next().unwrap_or_default();
    Ok(parse(addr, &text))
}

/// Reads `INFO replication`'s text: `role`, `master_repl_offset` and each `slaveN:` line
/// (`ip=…,port=…,state=…,offset=…,lag=…`); what it does not hold stays empty or 0.
pub fn parse(addr: &str, info: &str) -> RedisView {
    let mut view = RedisView {
        addr: addr.to_string(),
        role: String::new(),
        offset: 0,
        replicas: Vec::new(),
    };
    let mut offsets = Vec::new();
    for line in info.lines().map(str::trim) {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        match key {
            "role" => view.role = value.to_string(),
            "master_repl_offset" => view.offset = value.parse().unwrap_or(0),
            k if k.starts_with("slave") && k[5..].bytes().all(|b| b.is_ascii_digit()) => {
                let field = |name: &str| {
                    value
                        .split(',')
                        .filter_map(|kv| kv.split_once('='))
                        .find(|(k, _)| *k == name)
                        .map(|(_, v)| v)
                };
                let (ip, port) = (field("ip").unwrap_or("?"), field("port").unwrap_or("?"));
                let addr = if ip.contains(':') {
                    format!("[{ip}]:{port}")
                } else {
                    format!("{ip}:{port}")
                };
                offsets.push(
                    field("offset")
                        .and_then(|o| o.parse::<u64>().ok())
                        .unwrap_or(0),
                );
                view.replicas.push(RedisReplica {
                    addr,
                    state: field("state").unwrap_or("").to_string(),
                    behind_bytes: 0,
                    lag_s: field("lag").and_then(|l| l.parse().ok()).unwrap_or(0),
                });
            }
            _ => {}
        }
    }
    for (r, o) in view.replicas.iter_mut().zip(offsets) {
        r.behind_bytes = view.offset.saturating_sub(o);
    }
    view
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_primary_with_two_replicas() {
        let info = "# Replication\r\nrole:master\r\nconnected_slaves:2\r\n\
            slave0:ip=127.0.0.1,port=6380,state=online,offset=1000,lag=0\r\n\
            slave1:ip=::1,port=6381,state=wait_bgsave,offset=0,lag=3\r\n\
            master_failover_state:no-failover\r\nmaster_replid:abc\r\n\
            master_repl_offset:1200\r\nslave_read_repl_offset:9\r\n";
        let v = parse("10.0.0.10:6379", info);
        assert_eq!(v.addr, "10.0.0.10:6379");
        assert_eq!(v.role, "master");
        assert_eq!(v.offset, 1200);
        assert_eq!(
            v.replicas,
            [
                RedisReplica {
                    addr: "127.0.0.1:6380".into(),
                    state: "online".into(),
                    behind_bytes: 200,
                    lag_s: 0,
                },
                RedisReplica {
                    addr: "[::1]:6381".into(),
                    state: "wait_bgsave".into(),
                    behind_bytes: 1200,
                    lag_s: 3,
                },
            ]
        );
    }

    #[test]
    fn a_replica_or_a_lone_redis() {
        let v = parse(
            "r",
            "role:slave\nmaster_host:127.0.0.1\nmaster_port:6379\nmaster_link_status:up\nslave_repl_offset:5\nmaster_repl_offset:5\n",
        );
        assert_eq!(
            (v.role.as_str(), v.offset, v.replicas.len()),
            ("slave", 5, 0)
        );
        let v = parse(
            "r",
            "role:master\nconnected_slaves:0\nmaster_repl_offset:0\n",
        );
        assert_eq!((v.role.as_str(), v.replicas.len()), ("master", 0));
    }
}
