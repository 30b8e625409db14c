//! The Prometheus text exposition format (version 0.0.4): `# HELP` and `# TYPE` once per
//! family, then its samples, one per line, every family's samples together.

use std::fmt::Write;

/// The `Content-Type` of the text.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// A family's metric type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
}

/// The text being written.
#[derive(Debug, Default)]
pub struct Exposition {
    out: String,
}

impl Exposition {
    /// Starts the family `name` (the full name: `activestack_..._total` for a counter); its
    /// samples follow.
    pub fn family(&mut self, name: &str, kind: Kind, help: &str) {
        let kind = match kind {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
        };
        let help = help.replace('\\', "\\\\").replace('\n', "\\n");
        let _ = writeln!(self.out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }

    /// One sample of the family last started.
    pub fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (label, value)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                self.out.push_str(label);
                self.out.push_str("=\"");
                for c in value.chars() {
                    match c {
                        '\\' => self.out.push_str("\\\\"),
                        '"' => self.out.push_str("\\\""),
                        '\n' => self.out.push_str("\\n"),
                        c => self.out.push(c),
                    }
                }
                self.out.push('"');
            }
            self.out.push('}');
        }
        let _ = if value.is_finite() && value.fract() == 0.0 && value.abs() < 1e15 {
            writeln!(self.out, " {}", value as i64)
        } else {
            writeln!(self.out, " {value}")
        };
    }

    /// A family of one sample without labels.
    pub fn single(&mut self, name: &str, kind: Kind, help: &str, value: f64) {
        self.family(name, kind, help);
        self.sample(name, &[], value);
    }

    pub fn finish(self) -> String {
        self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_and_samples_are_written_as_prometheus_reads_them() {
        let mut text = Exposition::default();
        text.family("a_total", Kind::Counter, "Things.\nCounted.");
        text.sample("a_total", &[("kind", "x\"y\\z")], 3.0);
        text.sample("a_total", &[("kind", "b"), ("slot", "0")], 0.0);
        text.single("b_seconds", Kind::Gauge, "Time.", 0.25);
        assert_eq!(
            text.finish(),
            "# HELP a_total Things.\\nCounted.\n# TYPE a_total counter\n\
             a_total{kind=\"x\\\"y\\\\z\"} 3\na_total{kind=\"b\",slot=\"0\"} 0\n\
             # HELP b_seconds Time.\n# TYPE b_seconds gauge\nb_seconds 0.25\n"
        );
    }
}
