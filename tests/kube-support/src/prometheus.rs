//! Parsing of the Prometheus text exposition (`GET /metrics`), for tests and benchmarks that read
//! the counters and gauges of the API server or the controller.

use std::collections::BTreeMap;

/// One sample line of a Prometheus text exposition: `name{k="v",..} value`.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// The metric name.
    pub name: String,
    /// The labels (empty when the line has no `{..}`).
    pub labels: BTreeMap<String, String>,
    /// The sample value; `None` when it does not parse as an `f64`.
    pub value: Option<f64>,
}

/// Parses the text exposition: one [`Series`] per sample line; empty lines, `#` lines (`HELP`,
/// `TYPE`) and lines without a value are skipped. Samples carry no timestamp.
pub fn parse(text: &str) -> Vec<Series> {
    let mut out = Vec::new();
    for line in text.lines().filter(|l| !l.is_empty() && !l.starts_with('#')) {
        let (name, labels, value) = match line.split_once('{') {
            Some((name, rest)) => {
                let Some((labels, value)) = rest.rsplit_once('}') else {
                    continue;
                };
                (name, parse_labels(labels), value)
            }
            None => {
                let Some((name, value)) = line.split_once(' ') else {
                    continue;
                };
                (name, BTreeMap::new(), value)
            }
        };
        out.push(Series {
            name: name.to_owned(),
            labels,
            value: value.trim().parse().ok(),
        });
    }
    out
}

/// `k="v",k2="v2"`, the text between the braces of a series (values may contain escaped quotes:
/// a backslash keeps the character after it).
pub fn parse_labels(s: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut rest = s;
    while let Some((key, after)) = rest.split_once("=\"") {
        let mut value = String::new();
        let mut chars = after.char_indices();
        let mut end = after.len();
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => {
                    if let Some((_, n)) = chars.next() {
                        value.push(n);
                    }
                }
                '"' => {
                    end = i + 1;
                    break;
                }
                c => value.push(c),
            }
        }
        out.insert(key.trim_start_matches(',').trim().to_owned(), value);
        rest = &after[end..];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels<const N: usize>(pairs: [(&str, &str); N]) -> BTreeMap<String, String> {
        pairs.into_iter().map(|(k, v)| (k.to_owned(), v.to_owned())).collect()
    }

    #[test]
    fn parses_names_labels_and_values() {
        let text = "# HELP g a gauge\n# TYPE g gauge\ng{name=\"a\",namespace=\"\"} 3\n\nc 1\nbad{a=\"b\"} x\n";
        assert_eq!(
            parse(text),
            vec![
                Series {
                    name: "g".to_owned(),
                    labels: labels([("name", "a"), ("namespace", "")]),
                    value: Some(3.0),
                },
                Series {
                    name: "c".to_owned(),
                    labels: BTreeMap::new(),
                    value: Some(1.0),
                },
                Series {
                    name: "bad".to_owned(),
                    labels: labels([("a", "b")]),
                    value: None,
                },
            ]
        );
    }

    #[test]
    fn label_values_may_hold_escaped_quotes_braces_and_commas() {
        let series = parse("m{a=\"x\\\"} y\",b=\"1,2\"} 0.5\n");
        assert_eq!(series.len(), 1);
        assert_eq!(series[0].labels, labels([("a", "x\"} y"), ("b", "1,2")]));
        assert_eq!(series[0].value, Some(0.5));
        assert_eq!(
            parse_labels("verb=\"POST\", resource=\"pods\",code=\"201\""),
            labels([("verb", "POST"), ("resource", "pods"), ("code", "201")])
        );
    }
}
