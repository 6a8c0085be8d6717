//! Free TCP ports on 127.0.0.1 for the servers a test starts (one helper for the whole
//! workspace: the node's tests use it too).

/// A free TCP port on 127.0.0.1 for a server a test starts.
///
/// Not an ephemeral port (bind to 0): the kernel hands those out again as the local ports of
/// outgoing connections, and with many clusters starting at once one of them took a port between
/// this call and the server's bind (the server then failed to start). These come from below the
/// ephemeral range, each at most once per test process, and are checked free by a bind.
pub fn free_port() -> u16 {
    use std::sync::Mutex;
    static GIVEN: Mutex<Vec<u16>> = Mutex::new(Vec::new());
    let (low, high) = below_ephemeral_range();
    let mut given = GIVEN.lock().unwrap();
    for _ in 0..10_000 {
        let port = low + (rand_u32() % u32::from(high - low)) as u16;
        if given.contains(&port) {
            continue;
        }
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            given.push(port);
            return port;
        }
    }
    panic!("no free port in {low}..{high}");
}

/// The ports tests may listen on: from 20000 up to the start of the kernel's ephemeral range.
fn below_ephemeral_range() -> (u16, u16) {
    let start = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    if start > 21000 {
        (20000, start)
    } else {
        (10000, 20000)
    }
}

fn rand_u32() -> u32 {
    let b = uuid::Uuid::new_v4().into_bytes();
    u32::from_le_bytes([b[0], b[1], b[2], b[3]])
}
