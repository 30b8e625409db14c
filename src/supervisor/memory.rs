//! Memory thresholds of one worker: which `cluster.memoryWarning.*` / `cluster.memoryLimit.*`
//! a measurement crosses. Warnings fire once when crossed (and once more when cleared), not on
//! every heartbeat as the original's did.

use std::fmt;

use crate::config::MemoryThresholds;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    Rss,
    HeapTotal,
    HeapUsed,
}

impl Field {
    const ALL: [Field; 3] = [Field::Rss, Field::HeapTotal, Field::HeapUsed];

    /// The name used in `cluster.memoryWarning.<name>` and `cluster.memoryLimit.<name>`.
    pub fn key(self) -> &'static str {
        match self {
            Field::Rss => "rss",
            Field::HeapTotal => "heapTotal",
            Field::HeapUsed => "heapUsed",
        }
    }

    fn of(self, thresholds: &MemoryThresholds) -> Option<u64> {
        match self {
            Field::Rss => thresholds.rss,
            Field::HeapTotal => thresholds.heap_total,
            Field::HeapUsed => thresholds.heap_used,
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// One measurement, in bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub rss: u64,
    pub heap_total: u64,
    pub heap_used: u64,
}

impl Usage {
    fn of(&self, field: Field) -> u64 {
        match field {
            Field::Rss => self.rss,
            Field::HeapTotal => self.heap_total,
            Field::HeapUsed => self.heap_used,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Crossing {
    WarningCrossed {
        field: Field,
        value: u64,
        threshold: u64,
    },
    WarningCleared {
        field: Field,
        value: u64,
        threshold: u64,
    },
    OverLimit {
        field: Field,
        value: u64,
        limit: u64,
    },
}

/// Bytes shown as MB with one decimal, the unit of the config keys.
pub struct Mb(pub u64);

impl fmt::Display for Mb {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:.1} MB", self.0 as f64 / (1024.0 * 1024.0))
    }
}

impl fmt::Display for Crossing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Crossing::WarningCrossed {
                field,
                value,
                threshold,
            } => write!(
                f,
                "memory warning: {} {} is above cluster.memoryWarning.{} = {}",
                field.key(),
                Mb(value),
                field.key(),
                Mb(threshold)
            ),
            Crossing::WarningCleared {
                field,
                value,
                threshold,
            } => write!(
                f,
                "memory back to normal: {} {} is below cluster.memoryWarning.{} = {}",
                field.key(),
                Mb(value),
                field.key(),
                Mb(threshold)
            ),
            Crossing::OverLimit {
                field,
                value,
                limit,
            } => write!(
                f,
                "memory limit: {} {} is above cluster.memoryLimit.{} = {}",
                field.key(),
                Mb(value),
                field.key(),
                Mb(limit)
            ),
        }
    }
}

/// What one worker has already been warned about.
#[derive(Debug, Clone, Default)]
pub struct MemoryWatch {
    warned: [bool; 3],
}

impl MemoryWatch {
    /// The crossings `usage` makes now, given what was seen before.
    pub fn check(
        &mut self,
        usage: Usage,
        warning: &MemoryThresholds,
        limit: &MemoryThresholds,
    ) -> Vec<Crossing> {
        let mut out = Vec::new();
        for field in Field::ALL {
            let value = usage.of(field);
            if let Some(threshold) = field.of(warning) {
                let warned = &mut self.warned[field.index()];
                if value > threshold && !*warned {
                    *warned = true;
                    out.push(Crossing::WarningCrossed {
                        field,
                        value,
                        threshold,
                    });
                } else if value <= threshold && *warned {
                    *warned = false;
                    out.push(Crossing::WarningCleared {
                        field,
                        value,
                        threshold,
                    });
                }
            }
            if let Some(limit) = field.of(limit)
                && value > limit
            {
                out.push(Crossing::OverLimit {
                    field,
                    value,
                    limit,
                });
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MB: u64 = 1024 * 1024;

    fn rss(mb: u64) -> Usage {
        Usage {
            rss: mb * MB,
            ..Usage::default()
        }
    }

    #[test]
    fn a_warning_fires_once_per_crossing() {
        let warning = MemoryThresholds {
            rss: Some(100 * MB),
            ..Default::default()
        };
        let none = MemoryThresholds::default();
        let mut watch = MemoryWatch::default();
        assert!(watch.check(rss(50), &warning, &none).is_empty());
        let crossed = watch.check(rss(150), &warning, &none);
        assert!(matches!(
            crossed[..],
            [Crossing::WarningCrossed {
                field: Field::Rss,
                ..
            }]
        ));
        assert!(watch.check(rss(160), &warning, &none).is_empty());
        assert!(watch.check(rss(170), &warning, &none).is_empty());
        let cleared = watch.check(rss(90), &warning, &none);
        assert!(matches!(cleared[..], [Crossing::WarningCleared { .. }]));
        assert_eq!(watch.check(rss(150), &warning, &none).len(), 1);
    }

    #[test]
    fn over_the_limit_is_reported_each_time() {
        let limit = MemoryThresholds {
            heap_used: Some(10 * MB),
            ..Default::default()
        };
        let mut watch = MemoryWatch::default();
        let usage = Usage {
            heap_used: 11 * MB,
            ..Usage::default()
        };
        let none = MemoryThresholds::default();
        for _ in 0..2 {
            let over = watch.check(usage, &none, &limit);
            assert_eq!(
                over,
                [Crossing::OverLimit {
                    field: Field::HeapUsed,
                    value: 11 * MB,
                    limit: 10 * MB
                }]
            );
        }
        assert_eq!(
            over_text(&mut watch, usage, &limit),
            "memory limit: heapUsed 11.0 MB is above cluster.memoryLimit.heapUsed = 10.0 MB"
        );
    }

    fn over_text(watch: &mut MemoryWatch, usage: Usage, limit: &MemoryThresholds) -> String {
        watch.check(usage, &MemoryThresholds::default(), limit)[0].to_string()
    }

    #[test]
    fn absent_thresholds_check_nothing() {
        let none = MemoryThresholds::default();
        let mut watch = MemoryWatch::default();
        assert!(watch.check(rss(1 << 20), &none, &none).is_empty());
    }
}
