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
    fn no_header_and_no_rows_print_nothing() {
        assert_eq!(table(&[Col::Left(3)], None, vec![]), None);
        assert_eq!(
            table(&[Col::Left(3), Col::Right(4)], Some(&["A", "B"]), vec![]).unwrap(),
            "A      B"
        );
    }
}
