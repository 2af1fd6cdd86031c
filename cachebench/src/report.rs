//! Output: markdown tables, CSV files and SVG line plots.

use std::fmt::Write as _;
use std::path::Path;

/// A result table: one row per label, one numeric column per header.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Table {
    /// Header of the label column (e.g. `size`).
    pub(crate) row_header: String,
    /// Column headers (e.g. subject names).
    pub(crate) columns: Vec<String>,
    /// Rows: a label and one value per column.
    pub(crate) rows: Vec<(String, Vec<f64>)>,
    /// Decimal places per column in the markdown table.
    pub(crate) precision: Vec<usize>,
}

impl Table {
    /// An empty table with the given headers.
    pub(crate) fn new(row_header: &str, columns: Vec<String>, precision: usize) -> Self {
        Self {
            row_header: row_header.to_string(),
            rows: Vec::new(),
            precision: vec![precision; columns.len()],
            columns,
        }
    }

    /// Renders the table as GitHub-flavoured markdown.
    pub(crate) fn markdown(&self) -> String {
        let mut out = String::new();
        let _ = write!(out, "| {} |", self.row_header);
        for c in &self.columns {
            let _ = write!(out, " {c} |");
        }
        out.push_str("\n|---|");
        for _ in &self.columns {
            out.push_str("---:|");
        }
        out.push('\n');
        for (label, values) in &self.rows {
            let _ = write!(out, "| {label} |");
            for (i, v) in values.iter().enumerate() {
                if v.is_finite() {
                    let prec = self.precision.get(i).copied().unwrap_or(2);
                    let _ = write!(out, " {v:.prec$} |");
                } else {
                    out.push_str(" - |");
                }
            }
            out.push('\n');
        }
        out
    }

    /// Renders the table as CSV (full precision).
    pub(crate) fn csv(&self) -> String {
        let mut out = self.row_header.clone();
        for c in &self.columns {
            out.push(',');
            out.push_str(c);
        }
        out.push('\n');
        for (label, values) in &self.rows {
            out.push_str(label);
            for v in values {
                let _ = write!(out, ",{v}");
            }
            out.push('\n');
        }
        out
    }
}

/// Writes `table` as CSV to `path`.
pub(crate) fn write_csv(table: &Table, path: &Path) -> Result<(), String> {
    std::fs::write(path, table.csv()).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// Plots hit ratio (%) against cache size, one line per subject, as SVG.
/// Row labels of `table` must be the cache sizes.
pub(crate) fn write_svg(table: &Table, title: &str, path: &Path) -> Result<(), String> {
    use plotters::prelude::*;

    let err = |e: &dyn std::fmt::Display| format!("cannot plot to {}: {e}", path.display());
    let sizes: Vec<f64> = table
        .rows
        .iter()
        .map(|(l, _)| l.parse::<f64>().map_err(|e| err(&e)))
        .collect::<Result<_, _>>()?;
    let (x_min, x_max) = sizes
        .iter()
        .fold((f64::MAX, f64::MIN), |(lo, hi), &x| (lo.min(x), hi.max(x)));
    if sizes.is_empty() {
        return Err(err(&"no rows"));
    }
    let x_max = if x_max > x_min { x_max } else { x_min + 1.0 };

    let root = SVGBackend::new(path, (900, 560)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(55)
        .build_cartesian_2d(x_min..x_max, 0.0f64..100.0f64)
        .map_err(|e| err(&e))?;
    chart
        .configure_mesh()
        .x_desc("cache size (entries)")
        .y_desc("hit ratio %")
        .draw()
        .map_err(|e| err(&e))?;
    for (i, name) in table.columns.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        let points: Vec<(f64, f64)> = sizes
            .iter()
            .zip(&table.rows)
            .map(|(&x, (_, v))| (x, v[i]))
            .collect();
        chart
            .draw_series(LineSeries::new(points.clone(), color.stroke_width(2)))
            .map_err(|e| err(&e))?
            .label(name.as_str())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
        chart
            .draw_series(points.iter().map(|&p| Circle::new(p, 3, color.filled())))
            .map_err(|e| err(&e))?;
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(SeriesLabelPosition::LowerRight)
        .draw()
        .map_err(|e| err(&e))?;
    root.present().map_err(|e| err(&e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markdown_and_csv_shape() {
        let mut t = Table::new("size", vec!["a".into(), "b".into()], 2);
        t.rows.push(("10".into(), vec![1.0, 2.5]));
        let md = t.markdown();
        assert_eq!(md.lines().count(), 3);
        assert!(md.contains("| 10 | 1.00 | 2.50 |"), "{md}");
        assert_eq!(t.csv(), "size,a,b\n10,1,2.5\n");
    }
}
