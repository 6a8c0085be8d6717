//! How the client commands print: JSON with `--json`, else text — lists as tables of plain
//! aligned columns (comfy-table without borders), times as "5m ago".
//!
//! A column has a minimum width, so a list of short values looks as it always did; a longer value
//! widens its column for every row instead of pushing the rest of its own row out of line.

use anyhow::Result;
use berth_protocol::now_ms;
use comfy_table::{CellAlignment, ColumnConstraint, Table, Width};
use serde::Serialize;

/// Prints `v` as pretty JSON with `--json`, else as `text` prints it.
pub(super) fn print<T: Serialize>(json: bool, v: &T, text: impl FnOnce(&T)) -> Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(v)?);
    } else {
        text(v);
    }
    Ok(())
}

/// How long ago an epoch-ms time was, in its largest whole unit: `42s ago`, `5m ago`, `3d ago`.
pub(super) fn ago(ms: u64) -> String {
    let s = now_ms().saturating_sub(ms) / 1000;
    match s {
        0..=59 => format!("{s}s ago"),
        60..=3599 => format!("{}m ago", s / 60),
        3600..=86399 => format!("{}h ago", s / 3600),
        _ => format!("{}d ago", s / 86400),
    }
}

/// An epoch-ms time as RFC 3339 in UTC, to the millisecond: `2026-12-01T10:00:00.123Z`.
pub(super) fn timestamp(ms: u64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms);
    humantime::format_rfc3339_millis(t).to_string()
}

/// An epoch-ms time as RFC 3339 in UTC to the second, and how long ago: `2026-12-01T10:00:00Z
/// (5m ago)`.
pub(super) fn when(ms: u64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms);
    format!("{} ({})", humantime::format_rfc3339_seconds(t), ago(ms))
}

/// A span in milliseconds, short: `850ms`, `42.1s`, `3m 05s`, `2h 03m`.
pub(super) fn span(ms: u64) -> String {
    let s = ms / 1000;
    match ms {
        0..=999 => format!("{ms}ms"),
        1_000..=59_999 => format!("{:.1}s", ms as f64 / 1000.0),
        60_000..=3_599_999 => format!("{}m {:02}s", s / 60, s % 60),
        _ => format!("{}h {:02}m", s / 3600, (s % 3600) / 60),
    }
}

/// `text` without terminal control sequences (colours, cursor moves: CSI `ESC [ … final`, OSC
/// `ESC ] … BEL|ESC \`, and two-byte `ESC x`) or other control characters but tab — what a build
/// log's tools print for a terminal, unreadable in a file.
pub(super) fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\u{1b}' => match chars.next() {
                // CSI: parameters and intermediates up to a final byte in @..~.
                Some('[') => {
                    for c in chars.by_ref() {
                        if ('@'..='~').contains(&c) {
                            break;
                        }
                    }
                }
                // OSC (window titles, links): up to BEL or ST (`ESC \`).
                Some(']') => {
                    while let Some(c) = chars.next() {
                        if c == '\u{7}' {
                            break;
                        }
                        if c == '\u{1b}' && chars.peek() == Some(&'\\') {
                            chars.next();
                            break;
                        }
                    }
                }
                _ => {}
            },
            '\t' | '\n' => out.push(c),
            // A carriage return redraws the line: keep what was drawn last.
            '\r' => {
                if chars.peek().is_some_and(|&n| n != '\n') {
                    let start = out.rfind('\n').map_or(0, |i| i + 1);
                    out.truncate(start);
                }
            }
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

/// Log text as it is printed: as it came to a terminal, without control sequences anywhere else
/// (a file, a pipe).
pub(super) fn for_output(text: &str) -> std::borrow::Cow<'_, str> {
    use std::io::IsTerminal;
    if std::io::stdout().is_terminal()
        || !text
            .chars()
            .any(|c| c.is_control() && c != '\n' && c != '\t')
    {
        std::borrow::Cow::Borrowed(text)
    } else {
        std::borrow::Cow::Owned(strip_ansi(text))
    }
}

/// A column of a table: the side its values keep to, and the width they are padded to at least.
#[derive(Clone, Copy)]
pub(super) enum Col {
    Left(u16),
    Right(u16),
}

/// Prints a table: one space between columns, no borders, no trailing spaces. Nothing at all when
/// there is neither a header nor a row.
pub(super) fn print_table(columns: &[Col], header: Option<&[&str]>, rows: Vec<Vec<String>>) {
    if let Some(table) = table(columns, header, rows) {
        println!("{table}");
    }
}

fn table(columns: &[Col], header: Option<&[&str]>, rows: Vec<Vec<String>>) -> Option<String> {
    if header.is_none() && rows.is_empty() {
        return None;
    }
    let mut t = Table::new();
    t.load_preset(comfy_table::presets::NOTHING);
    if let Some(h) = header {
        t.set_header(h.to_vec());
    }
    t.add_rows(rows);
    for (i, col) in columns.iter().enumerate() {
        let Some(column) = t.column_mut(i) else { break };
        // The space between two columns is the right padding of the first.
        let gap = u16::from(i + 1 < columns.len());
        column.set_padding((0, gap));
        let (alignment, min) = match *col {
            Col::Left(w) => (CellAlignment::Left, w),
            Col::Right(w) => (CellAlignment::Right, w),
        };
        column.set_cell_alignment(alignment);
        if min > 0 {
            // The boundary counts the padding too.
            column.set_constraint(ColumnConstraint::LowerBoundary(Width::Fixed(min + gap)));
        }
    }
    Some(t.trim_fmt())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(cells: &[&str]) -> Vec<String> {
        cells.iter().map(|c| c.to_string()).collect()
    }

    #[test]
    fn short_values_line_up_as_fixed_width_columns() {
        let cols = [Col::Left(6), Col::Right(5), Col::Left(0)];
        let got = table(
            &cols,
            Some(&["NAME", "CPU", "NOTE"]),
            vec![row(&["web", "1.5", "ok"]), row(&["api", "12.0", ""])],
        )
        .unwrap();
        let want = [
            format!("{:<6} {:>5} {}", "NAME", "CPU", "NOTE"),
            format!("{:<6} {:>5} {}", "web", "1.5", "ok"),
            format!("{:<6} {:>5}", "api", "12.0"),
        ];
        assert_eq!(got, want.join("\n"));
    }

    #[test]
    fn a_long_value_widens_its_column_for_every_row() {
        let cols = [Col::Left(3), Col::Left(0)];
        let got = table(&cols, None, vec![row(&["a", "x"]), row(&["abcdef", "y"])]).unwrap();
        assert_eq!(got, "a      x\nabcdef y");
    }

    #[test]
    fn control_sequences_are_stripped() {
        assert_eq!(strip_ansi("plain text"), "plain text");
        assert_eq!(
            strip_ansi("\u{1b}[1;32mStep 1/3\u{1b}[0m : FROM busybox"),
            "Step 1/3 : FROM busybox"
        );
        assert_eq!(strip_ansi("a\u{1b}[2Kb\u{1b}[1Ac"), "abc");
        assert_eq!(strip_ansi("\u{1b}]0;title\u{7}x\u{1b}]8;;u\u{1b}\\y"), "xy");
        assert_eq!(strip_ansi("10%\r50%\r100%"), "100%");
        assert_eq!(strip_ansi("line\r\nnext\tx\u{8}"), "line\nnext\tx");
        assert_eq!(strip_ansi("naïve ✓ \u{1b}[31m"), "naïve ✓ ");
    }

    #[test]
    fn times_and_spans() {
        assert_eq!(timestamp(1_764_583_200_123), "2025-12-01T10:00:00.123Z");
        assert!(when(1_764_583_200_123).starts_with("2025-12-01T10:00:00Z ("));
        assert_eq!(span(850), "850ms");
        assert_eq!(span(42_149), "42.1s");
        assert_eq!(span(185_000), "3m 05s");
        assert_eq!(span(7_380_000), "2h 03m");
    }

    #[test]
    fn no_header_and_no_rows_print_nothing() {
        assert_eq!(table(&[Col::Left(3)], None, vec![]), None);
        assert_eq!(
            table(&[Col::Left(3), Col::Right(4)], Some(&["A", "B"]), vec![]).unwrap(),
            "A      B"
        );
    }
}
