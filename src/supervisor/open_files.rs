//! The limit on open descriptors, raised for the workers before they start.
//!
//! A worker holds one descriptor per client. A shell's soft limit is often 1024 while its hard
//! limit is far higher, and a cluster started from it would refuse its 1025th client with
//! `EMFILE`; systemd's unit sets both limits (`LimitNOFILE`). The master raises its soft limit
//! to the hard one at start, as Go's runtime and most servers do, and the workers inherit it.

use nix::sys::resource::{Resource, getrlimit, setrlimit};

/// What [`raise_to_hard_limit`] did.
#[derive(Debug, PartialEq, Eq)]
pub enum Raised {
    /// The soft limit was the hard one already.
    AtHard(u64),
    /// From the first to the second (the hard limit).
    From(u64, u64),
}

/// [`raise_to_hard_limit`], logged.
pub fn raise_for_workers() {
    match raise_to_hard_limit() {
        Ok(Raised::From(soft, hard)) => {
            tracing::info!(
                from = soft,
                to = hard,
                "open files limit raised to the hard limit"
            );
        }
        Ok(Raised::AtHard(limit)) => tracing::debug!(limit, "open files limit is the hard limit"),
        Err(e) => tracing::warn!("cannot raise the open files limit: {e}"),
    }
}

/// Raises the soft `RLIMIT_NOFILE` of this process to its hard limit.
fn raise_to_hard_limit() -> Result<Raised, nix::Error> {
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE)?;
    if soft >= hard {
        return Ok(Raised::AtHard(soft));
    }
    setrlimit(Resource::RLIMIT_NOFILE, hard, hard)?;
    Ok(Raised::From(soft, hard))
}

#[cfg(test)]
mod tests {
    use super::*;

    // nextest runs each test in a process of its own: lowering this process's limit touches no
    // other test.
    #[test]
    fn a_soft_limit_below_the_hard_one_is_raised_to_it() {
        let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
        let low = hard.min(512);
        setrlimit(Resource::RLIMIT_NOFILE, low, hard).unwrap();
        let raised = raise_to_hard_limit().unwrap();
        assert_eq!(getrlimit(Resource::RLIMIT_NOFILE).unwrap(), (hard, hard));
        if low < hard {
            assert_eq!(raised, Raised::From(low, hard));
        }
        assert_eq!(raise_to_hard_limit().unwrap(), Raised::AtHard(hard));
    }
}
