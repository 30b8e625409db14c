//! What can go wrong reading `gateway.properties`: hard errors ([`ConfigError`], each problem
//! with its file and line) and warnings ([`ConfigWarning`]) that do not stop the gateway.

use std::fmt;
use std::io;
use std::path::PathBuf;

/// Why a config file could not be used. The binary prints its `Display` (one problem per line,
/// no trailing newline) to stderr and exits with code 2.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read at all (missing, unreadable, a directory, ...).
    #[error("cannot read config file {}: {source}", path.display())]
    Read { path: PathBuf, source: io::Error },
    /// The file was read but some values are wrong. All problems of the file, sorted by line.
    #[error("{}", OnePerLine(problems))]
    Invalid {
        path: PathBuf,
        problems: Vec<Problem>,
    },
}

impl ConfigError {
    /// The file this error is about.
    pub fn path(&self) -> &std::path::Path {
        match self {
            ConfigError::Read { path, .. } | ConfigError::Invalid { path, .. } => path,
        }
    }

    /// The individual problems (empty for [`ConfigError::Read`]).
    pub fn problems(&self) -> &[Problem] {
        match self {
            ConfigError::Read { .. } => &[],
            ConfigError::Invalid { problems, .. } => problems,
        }
    }
}

/// One invalid value (or syntax error) in a config file, e.g.
/// `gateway.properties:12: cluster.workerTimeout = "5s": expected milliseconds as a whole number`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The file, as it was given.
    pub path: PathBuf,
    /// 1-based line; `None` only when the parser could not tell.
    pub line: Option<usize>,
    /// Everything after `path:line: `.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{line}: {}", self.path.display(), self.message),
            None => write!(f, "{}: {}", self.path.display(), self.message),
        }
    }
}

/// Items one per line, without a trailing newline (config problems, lost keys of a reload).
pub(super) struct OnePerLine<'a, T>(pub &'a [T]);

impl<T: fmt::Display> fmt::Display for OnePerLine<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, item) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{item}")?;
        }
        Ok(())
    }
}

/// Something suspicious in a config file that does not stop the gateway; logged at startup and
/// printed by `check-config`. `Display` gives one line starting with `path:line: `.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigWarning {
    /// A key that is not in the table of known keys (ignored).
    UnknownKey {
        path: PathBuf,
        line: usize,
        key: String,
        /// The known key it most likely means, if one is close enough.
        suggestion: Option<&'static str>,
    },
    /// A key given more than once; the value on `line` (the later one) is used.
    DuplicateKey {
        path: PathBuf,
        line: usize,
        key: String,
        previous_line: usize,
    },
    /// A key that is accepted for compatibility but has no effect.
    Obsolete {
        path: PathBuf,
        line: usize,
        key: &'static str,
        reason: &'static str,
    },
    /// A boolean the Node gateway read otherwise (it took fewer values as true): this gateway
    /// reads `value` as `read_as`, the Node gateway read it as `!read_as`.
    ReadOtherwiseByNode {
        path: PathBuf,
        line: usize,
        key: &'static str,
        /// As written, trailing spaces kept (the Node gateway did not trim).
        value: String,
        read_as: bool,
        /// The values the Node gateway took as true, listed for the message.
        node_took: String,
    },
    /// A `cluster.memoryWarning.*` threshold at or above its `cluster.memoryLimit.*`: the worker
    /// is restarted before (or when) the warning would be logged, so it never warns in advance.
    WarningNotBelowLimit {
        path: PathBuf,
        line: usize,
        warning_key: &'static str,
        warning_mb: u64,
        limit_key: &'static str,
        limit_mb: u64,
        limit_line: usize,
    },
}

impl ConfigWarning {
    /// The line the warning is about.
    pub fn line(&self) -> usize {
        match self {
            ConfigWarning::UnknownKey { line, .. }
            | ConfigWarning::DuplicateKey { line, .. }
            | ConfigWarning::Obsolete { line, .. }
            | ConfigWarning::ReadOtherwiseByNode { line, .. }
            | ConfigWarning::WarningNotBelowLimit { line, .. } => *line,
        }
    }
}

impl fmt::Display for ConfigWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigWarning::UnknownKey {
                path,
                line,
                key,
                suggestion,
            } => {
                write!(f, "{}:{line}: unknown key {key}", path.display())?;
                if let Some(known) = suggestion {
                    write!(f, " (did you mean {known}?)")?;
                }
                Ok(())
            }
            ConfigWarning::DuplicateKey {
                path,
                line,
                key,
                previous_line,
            } => write!(
                f,
                "{}:{line}: duplicate key {key}: line {line} overrides line {previous_line}",
                path.display()
            ),
            ConfigWarning::Obsolete {
                path,
                line,
                key,
                reason,
            } => write!(
                f,
                "{}:{line}: {key} is obsolete and ignored ({reason})",
                path.display()
            ),
            ConfigWarning::ReadOtherwiseByNode {
                path,
                line,
                key,
                value,
                read_as,
                node_took,
            } => write!(
                f,
                "{}:{line}: {key} = {value:?} is read as {read_as}; the Node gateway read it as \
                 {} (it took only {node_took})",
                path.display(),
                !read_as
            ),
            ConfigWarning::WarningNotBelowLimit {
                path,
                line,
                warning_key,
                warning_mb,
                limit_key,
                limit_mb,
                limit_line,
            } => write!(
                f,
                "{}:{line}: {warning_key} = {warning_mb} is not below {limit_key} = {limit_mb} \
                 (line {limit_line}), so the warning never fires before the limit",
                path.display()
            ),
        }
    }
}
