//! The client side of Server-Sent Events (`text/event-stream`), as the log endpoints send them:
//! a pure parser shared by the CLI and the tests. No I/O here.

/// One Server-Sent Event.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct SseEvent {
    pub id: Option<String>,
    /// `message` unless the server named it.
    pub event: String,
    pub data: String,
}

impl SseEvent {
    /// The data of an unnamed (`message`) event as JSON of `T`.
    pub fn json<T: serde::de::DeserializeOwned>(&self) -> Option<T> {
        (self.event == "message")
            .then(|| serde_json::from_str(&self.data).ok())
            .flatten()
    }
}

/// Splits an SSE byte stream into events (the `text/event-stream` format: `field: value` lines,
/// a blank line ends an event, `:` lines are comments).
#[derive(Default)]
pub struct SseParser {
    /// Bytes after the last complete line (a chunk may end inside a UTF-8 character).
    buf: Vec<u8>,
    current: SseEvent,
    has_data: bool,
}

impl SseParser {
    pub fn push(&mut self, chunk: &[u8]) -> Vec<SseEvent> {
        self.buf.extend_from_slice(chunk);
        let mut out = Vec::new();
        while let Some(nl) = self.buf.iter().position(|b| *b == b'\n') {
            let raw: Vec<u8> = self.buf.drain(..=nl).collect();
            let line = String::from_utf8_lossy(&raw);
            let line = line.trim_end_matches(['\n', '\r']);
            if line.is_empty() {
                if self.has_data {
                    let mut ev = std::mem::take(&mut self.current);
                    if ev.event.is_empty() {
                        ev.event = "message".into();
                    }
                    out.push(ev);
                }
                self.current = SseEvent::default();
                self.has_data = false;
                continue;
            }
            if line.starts_with(':') {
                continue;
            }
            let (field, value) = line.split_once(':').unwrap_or((line, ""));
            let value = value.strip_prefix(' ').unwrap_or(value);
            match field {
                "id" => self.current.id = Some(value.to_string()),
                "event" => self.current.event = value.to_string(),
                "data" => {
                    if self.has_data {
                        self.current.data.push('\n');
                    }
                    self.current.data.push_str(value);
                    self.has_data = true;
                }
                _ => {}
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_server_sent_events() {
        let mut p = SseParser::default();
        assert!(p.push(b": keep-alive\n\nid: 1-0\nda").is_empty());
        // A chunk boundary inside the two bytes of "é".
        assert!(p.push(b"ta: {\"a\":\"\xc3").is_empty());
        let evs = p.push(b"\xa9\"}\n\nevent: end\ndata: x\ndata: y\r\n\n");
        assert_eq!(
            evs,
            vec![
                SseEvent {
                    id: Some("1-0".into()),
                    event: "message".into(),
                    data: "{\"a\":\"é\"}".into()
                },
                SseEvent {
                    id: None,
                    event: "end".into(),
                    data: "x\ny".into()
                },
            ]
        );
    }
}
