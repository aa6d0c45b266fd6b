//! `--compare`: the same scenarios against two server binaries, A B A B in one sitting, and a
//! table of each figure's median for A and for B with the ratio B/A.

use std::fmt::Write;

use crate::report::{Section, num, table};

/// The binaries compared and how many rounds each ran.
#[derive(Debug, serde::Serialize)]
pub struct Comparison {
    pub a: String,
    pub b: String,
    pub rounds: u32,
}

/// A cell's figure, when it is one number (thousands separators and a unit after it allowed).
fn figure(cell: &str) -> Option<f64> {
    let mut words = cell.split_whitespace();
    let number = words.next()?.trim_end_matches(['×', '%']);
    if !words.all(|unit| unit.chars().all(char::is_alphabetic)) {
        return None;
    }
    number.replace(',', "").parse().ok()
}

fn median(mut values: Vec<f64>) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let middle = values.len() / 2;
    Some(if values.len() % 2 == 0 {
        (values[middle - 1] + values[middle]) / 2.0
    } else {
        values[middle]
    })
}

/// The A/B tables of every scenario and backend that ran under both binaries.
pub fn write(out: &mut String, comparison: &Comparison, sections: &[Section]) {
    let _ = writeln!(
        out,
        "## A/B comparison\n\nA is `{}`, B is `{}`; each ran {} times, alternating A B. \
         Medians per figure; B/A below 1 means B has less of it.\n",
        comparison.a, comparison.b, comparison.rounds
    );
    let mut seen: Vec<(&str, &str)> = Vec::new();
    for section in sections {
        let key = (section.scenario, section.backend);
        if seen.contains(&key) {
            continue;
        }
        seen.push(key);
        let runs = |variant: &str| -> Vec<&Section> {
            sections
                .iter()
                .filter(|s| (s.scenario, s.backend) == key && s.variant == Some(variant))
                .collect()
        };
        let (a, b) = (runs("A"), runs("B"));
        let Some(first) = a.first() else {
            continue;
        };
        let mut rows = Vec::new();
        for (r, row) in first.rows.iter().enumerate() {
            for (c, column) in first.columns.iter().enumerate().skip(1) {
                let values = |runs: &[&Section]| -> Vec<f64> {
                    runs.iter()
                        .filter_map(|s| s.rows.get(r)?.get(c).and_then(|cell| figure(cell)))
                        .collect()
                };
                let (Some(ma), Some(mb)) = (median(values(&a)), median(values(&b))) else {
                    continue;
                };
                let ratio = if ma == 0.0 {
                    "—".to_owned()
                } else {
                    format!("{:.2}", mb / ma)
                };
                rows.push(vec![
                    row[0].clone(),
                    (*column).to_owned(),
                    num(ma),
                    num(mb),
                    ratio,
                ]);
            }
        }
        let _ = writeln!(out, "### {} on {}\n", key.0, key.1);
        table(out, &["row", "figure", "A", "B", "B/A"], &rows);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_are_read_with_separators_and_units_and_others_left_out() {
        assert_eq!(figure("4,934"), Some(4934.0));
        assert_eq!(figure("2.5 ms"), Some(2.5));
        assert_eq!(figure("1.46×"), Some(1.46));
        assert_eq!(figure("0.16 + 0.15"), None);
        assert_eq!(figure("—"), None);
        assert_eq!(figure("ok"), None);
        assert_eq!(median(vec![3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(vec![4.0, 1.0]), Some(2.5));
        assert_eq!(median(Vec::new()), None);
    }
}
